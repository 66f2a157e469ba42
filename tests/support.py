"""Helpers for tests that run real processes: a redis-server and conveyor workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis

from conveyor.message import encode_envelope
from conveyor.stores.redis.keys import RedisKeys


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    predicate: object, timeout: float, interval: float = 0.02, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A redis-server of the suite's own, on a free port, stopped by its PID."""

    def __init__(self, directory: Path, port: int, appendonly: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._pings, 10, what=f"redis-server on port {self.port}")

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


class WorkerProcess:
    """``conveyor worker`` in its own process group, its output in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.output()}")
            return " ready." in self.output()

        wait_for(ready, timeout, what="worker ready")

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's whole process group (the parent and every child)."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.kill_group(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_group(signal.SIGKILL)
                self.process.wait(5)
        self.kill_group(signal.SIGKILL)  # children left behind, if any
        self._log.close()


# --- helpers for the integration and chaos tests ----------------------------------------

TESTS_ROOT = Path(__file__).parent


@contextmanager
def connected(app: Any, url: str) -> Iterator[Any]:
    """Point a test app (imported in the test process) at ``url`` for one test, and close
    its connections afterwards (an app caches its broker and backend); the setting is
    put back as it was."""
    was_set, previous = app.conf.is_set("broker_url"), app.conf.broker_url
    app.close()
    app.conf.broker_url = url
    try:
        yield app
    finally:
        app.close()
        if was_set:
            app.conf.broker_url = previous
        else:
            del app.conf["broker_url"]


def publish_many(
    calls: Sequence[tuple[Any, Sequence[Any]]],
    *,
    queue: str | None = None,
    countdown: float | None = None,
) -> list[str]:
    """Publish ``(task, args)`` calls in one bulk send (in this order, on one queue),
    optionally held ``countdown`` seconds in the broker; returns the task ids."""
    app = calls[0][0].app
    envelopes = [task.app.producer.envelope(task, args, None) for task, args in calls]
    bodies = [encode_envelope(e, "json") for e in envelopes]
    app.broker.publish(queue or app.conf.task_default_queue, bodies, countdown=countdown)
    return [e.id for e in envelopes]


def inflight_task_ids(client: redis.Redis, prefix: str = "conveyor") -> set[str]:
    """Ids of the tasks every consumer holds leased right now (read from Redis; each
    value is ``list key \\n deliveries \\n body``, as fetch.lua writes it)."""
    ids: set[str] = set()
    for key in client.scan_iter(RedisKeys(prefix).inflight("*")):
        for value in client.hvals(key):
            body = value.split(b"\n", 2)[2]
            ids.add(json.loads(body)["id"])
    return ids


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def rss_kib(pids: Iterable[int]) -> int:
    """Total resident memory of ``pids`` in KiB, from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def run_cli(broker_url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python -m conveyor ARGS`` against ``broker_url`` and capture its output."""
    env = dict(os.environ)
    env["CONVEYOR_BROKER_URL"] = broker_url
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_ROOT.parent), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env, cwd=TESTS_ROOT.parent, capture_output=True, text=True, timeout=timeout,
    )
