"""``conveyor beat``: the scheduler's loop, with signals and a banner.

It runs in the main thread of its own process: as ``conveyor -A proj beat``, or as a
child process of a worker started with ``-B`` (see ``worker/beat.py``). SIGTERM or
SIGINT stops it cleanly: it drops the leader lease so another beat takes over at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..stores.urls import masked
from .leader import TRANSIENT
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["Beat"]

logger = logging.getLogger("conveyor.beat")


class Beat:
    def __init__(
        self,
        app: Conveyor,
        *,
        lease_seconds: float | None = None,
        max_interval: float | None = None,
        banner: bool = True,
        stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    ) -> None:
        self.app = app
        self.lease_seconds = lease_seconds
        self.max_interval = max_interval
        self.banner = banner
        self.stop_signals = stop_signals
        self.stop = threading.Event()
        self._stopping = False

    def run(self) -> int:
        """Schedule until SIGTERM/SIGINT; returns the exit code."""
        app = self.app
        app.import_default_modules()
        app.finalize()
        if self.max_interval:
            app.conf.beat_max_loop_interval = self.max_interval
        scheduler = Scheduler(app, lease_seconds=self.lease_seconds)
        for signum in self.stop_signals:
            signal.signal(signum, self._on_signal)
        if self.banner:
            self._print_banner(scheduler)
        logger.info("beat: starting as %s", scheduler.lease.owner)
        try:
            while not self.stop.is_set():
                try:
                    wait = scheduler.tick()
                except TRANSIENT as exc:
                    logger.warning("beat: broker unreachable (%s); trying again", exc)
                    wait = 1.0
                except Exception:
                    logger.exception("beat: tick failed")
                    wait = 1.0
                self.stop.wait(wait)
        finally:
            scheduler.close()
            logger.info("beat: stopped")
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only the first signal sets the event: a second one may land inside set(),
        # whose lock is not reentrant.
        if not self._stopping:
            self._stopping = True
            self.stop.set()

    def _print_banner(self, scheduler: Scheduler) -> None:
        lines = [
            f"conveyor beat v{__version__} is starting.",
            f"- [config]  broker:    {masked(self.app.broker_url)}",
            f"- [config]  timezone:  {scheduler.tz}",
            f"- [config]  lease:     {scheduler.lease.ttl:g}s (one beat leads; others wait)",
            "- [schedule]",
            *(f"  . {e.name}: {e.task} {e.schedule!r}" for e in scheduler.entries),
            "",
        ]
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
