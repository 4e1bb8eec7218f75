"""Tools: declared in YAML, validated at start-up, run against the session's source."""
