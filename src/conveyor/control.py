"""``app.control``: commands for running workers, stored in the broker so they reach
every worker, including ones that start later."""

from __future__ import annotations

import signal as signal_module
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .exceptions import ConfigurationError

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


def _signal_name(signal: str | int) -> str:
    if isinstance(signal, int):
        return signal_module.Signals(signal).name
    name = signal.upper()
    if not name.startswith("SIG"):
        name = f"SIG{name}"
    if not hasattr(signal_module, name):
        raise ConfigurationError(f"unknown signal {signal!r}: expected e.g. SIGTERM or SIGKILL")
    return name
