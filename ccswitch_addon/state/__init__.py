"""Where what the proxy learns is kept: the SQLite state file."""
