"""SQL that emcp is willing to run: proven read-only (`guard`) or built from checked parts (`build`)."""
