"""What a worker does for Django (Celery's ``celery.fixups.django``), when the process
has ``DJANGO_SETTINGS_MODULE`` set and Django is installed.

- :func:`setup_if_configured`, before the app imports its task modules
  (``Conveyor.import_default_modules``): ``django.setup()``, so ``tasks.py`` modules may
  import models.
- :func:`install`, when the worker starts: it closes every database connection it has
  (a prefork child must not share its parent's socket), and subscribes
  :class:`CloseOldConnections` to the worker's events: stale connections (unusable, or
  older than ``CONN_MAX_AGE``) are closed before each task starts and after it ends, in
  the thread that runs it (Django's connections are per thread).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...events import TaskFailed, TaskRetried, TaskRevoked, TaskStarted, TaskSucceeded
    from ...worker.main import Worker

__all__ = ["CloseOldConnections", "configured", "install", "setup_if_configured"]

logger = logging.getLogger("conveyor.worker")


def configured() -> bool:
    """This process runs a Django project (``DJANGO_SETTINGS_MODULE`` is set)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return False
    try:
        import django  # noqa: F401
    except ImportError:
        return False
    return True


def setup_if_configured() -> None:
    """``django.setup()`` once, in a Django project (a no-op elsewhere)."""
    if configured():
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()


def install(worker: Worker) -> bool:
    """Set the worker up for Django; False outside a Django project."""
    if not configured():
        return False
    setup_if_configured()
    from django.db import connections

    connections.close_all()
    worker.hooks.subscribe(CloseOldConnections())
    logger.info("Django project %s: database connections are closed around each task",
                os.environ["DJANGO_SETTINGS_MODULE"])
    return True


def close_old_connections() -> None:
    """Close the connections of this thread that are unusable or past their age."""
    from django.db import close_old_connections as close

    close()


class CloseOldConnections:
    """A worker listener: stale database connections closed before and after each task."""

    def on_task_started(self, event: TaskStarted) -> None:
        close_old_connections()

    def _after(self, event: Any) -> None:
        close_old_connections()

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        self._after(event)

    def on_task_failed(self, event: TaskFailed) -> None:
        self._after(event)

    def on_task_retried(self, event: TaskRetried) -> None:
        self._after(event)

    def on_task_revoked(self, event: TaskRevoked) -> None:
        self._after(event)
