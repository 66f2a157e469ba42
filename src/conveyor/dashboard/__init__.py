"""The web dashboard (``conveyor -A app dashboard``): Flower's job, with a durable
history folded from the store's event stream. See docs/dashboard.md."""

from .server import DashboardOptions, serve

__all__ = ["DashboardOptions", "serve"]
