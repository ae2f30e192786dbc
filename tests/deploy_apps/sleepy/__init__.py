"""A slow migration: it creates a table, says so in a file, then sleeps (to be killed)."""
