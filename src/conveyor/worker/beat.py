"""The embedded beat of ``conveyor worker -B``: a child process, not a thread.

The prefork supervisor must stay single-threaded (forking a process that has threads
can deadlock the child), and a beat loop inside the supervisor's own loop would let a
slow broker call delay supervision (renewals, hard time limits) and vice versa. So the
worker forks one more child that runs :class:`~conveyor.beat.service.Beat`, with its own
broker connection. The prefork supervisor reaps it and starts it again if it dies; it
dies with the worker (``PR_SET_PDEATHSIG``) and stops with it (SIGTERM, then SIGKILL).
With the threads and solo pools it is forked before any thread starts, and not
restarted (a fork from a threaded process is what we avoid).

Several workers may run ``-B``: the leader lease makes one beat fire each tick.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["EmbeddedBeat"]

logger = logging.getLogger("conveyor.worker")

_STOP_GRACE = 5.0


class EmbeddedBeat:
    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.pid: int | None = None

    def start(self) -> int:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child; covered by integration tests
            code = 1
            try:
                code = self._child_main()
            except BaseException:
                logger.exception("embedded beat crashed")
            finally:
                os._exit(code)
        self.pid = pid
        logger.info("embedded beat started (pid %d)", pid)
        return pid

    def _child_main(self) -> int:  # pragma: no cover - in the child
        from ..beat.service import Beat
        from .orphans import die_with_parent

        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the worker's handler
        die_with_parent()
        signal.set_wakeup_fd(-1)  # the supervisor's wake-up pipe is not ours
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker coordinates Ctrl-C
        return Beat(self.app, banner=False, stop_signals=(signal.SIGTERM,)).run()

    def reaped(self, pid: int, status: int, respawn: bool) -> bool:
        """Tell it about a reaped child; True when that was the beat."""
        if pid != self.pid:
            return False
        self.pid = None
        if os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) != 0:
            logger.error("embedded beat (pid %d) ended: %s", pid, _how(status))
        if respawn:
            self.start()
        return True

    def terminate(self) -> None:
        """Ask it to stop (it drops the leader lease so another beat takes over)."""
        if self.pid is not None:
            _kill(self.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Stop it and wait for it (SIGKILL after a grace period)."""
        pid = self.pid
        if pid is None:
            return
        _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            time.sleep(0.02)
        else:
            _kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pid = None


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
