"""``app.control``: commands for running workers, stored in the broker so they reach
every worker, including ones that start later."""

from __future__ import annotations

import signal as signal_module
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .exceptions import ConfigurationError
from .limits import parse_rate

if TYPE_CHECKING:
    from .app import Conveyor

__all__ = ["Control"]


class Control:
    def __init__(self, app: Conveyor) -> None:
        self.app = app

    def revoke(
        self,
        task_id: str | Sequence[str],
        destination: object = None,  # accepted for Celery compatibility: all workers obey
        terminate: bool = False,
        signal: str | int = "SIGTERM",
    ) -> None:
        """Revoke tasks: a worker that receives one does not run it (it is REVOKED).
        With ``terminate`` a task already running is stopped with ``signal``.

        Revocations live in the broker for ``worker_revoke_expires`` seconds (3 h), so
        they reach every worker, including ones started later, and survive restarts.
        """
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        name = _signal_name(signal) if terminate else None
        ttl = float(self.app.conf.worker_revoke_expires)
        self.app.broker.revoke(ids, ttl, terminate=name)

    def rate_limit(
        self,
        task_name: str,
        rate_limit: str | float | None,
        destination: object = None,  # accepted for Celery compatibility: all workers obey
    ) -> None:
        """Change a task's rate limit at run time, for all workers together:
        ``app.control.rate_limit("tasks.add", "5/s")``; ``"0"`` lifts the limit; None
        goes back to the limit in the task's code.

        Stored in the broker; every worker reads it within a second (worker/admission.py).
        """
        if rate_limit is None:
            self.app.broker.set_rate_limit(task_name, None)
            return
        parse_rate(rate_limit)  # refuse a bad rate here, not in every worker
        self.app.broker.set_rate_limit(task_name, str(rate_limit))


def _signal_name(signal: str | int) -> str:
    if isinstance(signal, int):
        return signal_module.Signals(signal).name
    name = signal.upper()
    if not name.startswith("SIG"):
        name = f"SIG{name}"
    if not hasattr(signal_module, name):
        raise ConfigurationError(f"unknown signal {signal!r}: expected e.g. SIGTERM or SIGKILL")
    return name
