"""Large results as block streams: bounded memory, backpressure to the source, handles to pull the rest."""
