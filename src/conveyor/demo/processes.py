"""The demo's worker processes: real ``conveyor worker`` commands, started and stopped.

Each runs in its own process group (Ctrl-C in the terminal reaches only the demo, which
then stops them in order), writes its log to a file, and is asked by Linux to die if the
demo itself dies without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..app import Conveyor
from ..worker.identity import expand_hostname
from ..worker.orphans import die_with_parent

__all__ = ["WorkerFailed", "WorkerNode", "WorkerSpec", "stop_all", "wait_ready"]



class WorkerFailed(RuntimeError):
    """A worker process exited on its own, or did not become ready."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One ``conveyor worker`` command line."""

    name: str  # -n, before %h expansion
    pool: str
    concurrency: int
    queues: Sequence[str]
    beat: bool = False  # -B: also run beat (the app's periodic tasks), in a child process
    events: bool = False  # -E: store task events (for conveyor demo --dashboard)

    def command(self, app_module: str, broker_url: str, backend_url: str) -> list[str]:
        app = ["-A", app_module, "-b", broker_url, "--result-backend", backend_url]
        pool = ["-P", self.pool, "-c", str(self.concurrency), "-Q", ",".join(self.queues)]
        rest = ["-n", self.name, "-l", "warning", "--shutdown-timeout", "10"]
        beat = ["-B"] if self.beat else []
        events = ["-E"] if self.events else []
        return [sys.executable, "-m", "conveyor", *app, "worker", *pool, *beat, *events, *rest]

    def describe(self) -> str:
        unit = "process" if self.pool == "prefork" else "thread"
        plural = "es" if unit == "process" else "s"
        count = f"{self.concurrency} {unit}{plural if self.concurrency != 1 else ''}"
        queues = ", ".join(self.queues)
        beat = ", with beat (-B)" if self.beat else ""
        return f"{expand_hostname(self.name)} ({self.pool}, {count}, queue {queues}{beat})"


@dataclass(slots=True)
class WorkerNode:
    spec: WorkerSpec
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def hostname(self) -> str:
        return expand_hostname(self.spec.name)

    def start(self, command: list[str], env: Mapping[str, str] | None = None) -> None:
        """``env``: variables to set for the worker, on top of the demo's own."""
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent_by_sigterm,  # safe: the demo starts no thread before this
        )

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise WorkerFailed(
                f"worker {self.hostname} exited with code {self.process.returncode}:\n"
                f"{self.log_tail()}"
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        """Ask for a warm shutdown: SIGTERM to the whole group, as systemd does."""
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)

    def stop(self, grace: float = 12.0) -> None:
        """Warm shutdown within ``grace`` seconds, then SIGKILL whatever is left."""
        process = self.process
        if process is not None:
            self.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(5)
            _signal_group(process.pid, signal.SIGKILL)  # children left behind, if any
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_all(nodes: Sequence[WorkerNode], grace: float = 12.0) -> None:
    """Stop every node, all at once (each takes up to a second to finish its fetch)."""
    for node in nodes:
        node.terminate()
    deadline = time.monotonic() + grace
    for node in nodes:
        node.stop(max(0.0, deadline - time.monotonic()))


def wait_ready(app: Conveyor, nodes: Sequence[WorkerNode], timeout: float) -> float:
    """Wait until every node's heartbeat is in the broker; returns the seconds it took."""
    started = time.monotonic()
    wanted = {node.hostname for node in nodes}
    while True:
        for node in nodes:
            node.check()
        alive = {str(info.get("hostname")) for info in app.coordinator.workers()}
        if wanted <= alive:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            missing = ", ".join(sorted(wanted - alive))
            raise WorkerFailed(f"worker {missing} not ready after {timeout:.0f}s")
        time.sleep(0.02)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _die_with_parent_by_sigterm() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM this worker if the demo dies without stopping it (kill -9)."""
    die_with_parent(signal.SIGTERM)
