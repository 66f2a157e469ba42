"""A FastAPI service that scores reviews on conveyor workers (see README.md)."""
