"""The embedded SQLite store (the default): transport, results and coordination in one file."""
