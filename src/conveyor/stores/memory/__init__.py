"""The in-memory store: a real implementation of every interface, for tests and eager use."""
