"""Process helpers: a private redis-server and a worker in its own process group."""

from __future__ import annotations

import collections
import compileall
import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import psutil
import redis

READY_RE = re.compile(r"\bready\b", re.IGNORECASE)
BENCH = Path(__file__).resolve().parent


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a worker or client the harness starts: this one, ``extra``,
    unbuffered output, and bench/ on the path (the task modules live there)."""
    path = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **extra, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}


def byte_compile() -> None:
    """Byte-compile conveyor's source and the bench's task modules, as pip does for an
    installed package. The peers run from site-packages, compiled at install; conveyor
    runs from its editable checkout, and where PYTHONDONTWRITEBYTECODE is set (as in
    this machine's sessions) every worker start would compile its ~150 modules again:
    ~0.1 s of "start to first task" that no installed conveyor pays (docs/benchmarks.md,
    issue 17). Stale files are harmless: Python checks each source's mtime and size."""
    spec = importlib.util.find_spec("conveyor")
    here = Path(__file__).resolve().parent
    for directory in [here, *([Path(spec.origin).parent] if spec and spec.origin else [])]:
        compileall.compile_dir(directory, quiet=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway redis-server on a free port, no persistence, stopped by its PID."""

    def __init__(self, binary: str = "/usr/bin/redis-server") -> None:
        self.binary = binary
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-redis-")
        self.port = free_port()
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.tmp.name,
            "--logfile",
            str(Path(self.tmp.name) / "redis.log"),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tmp is not None:
            self.tmp.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Worker:
    """A worker command started in a new session; its output is scanned for 'ready'."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.ready_at: float | None = None
        self._ready = threading.Event()
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._pump, args=(s,), daemon=True)
            for s in (self.proc.stdout, self.proc.stderr)
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in iter(stream.readline, ""):
            if not self._ready.is_set() and READY_RE.search(line):
                self.ready_at = time.perf_counter()
                self._ready.set()
            self.tail.append(line)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n" + self.output())

    def output(self) -> str:
        return "".join(list(self.tail)[-40:])

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawning to the first output line matching 'ready'."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("worker never logged 'ready':\n" + self.output())
        assert self.ready_at is not None
        return self.ready_at - self.t0

    def memory_mb(self) -> dict[str, float]:
        """RSS of the process tree (total, parent, largest child) and USS total, in MB."""
        parent = psutil.Process(self.proc.pid)
        children = parent.children(recursive=True)
        mb = 1024.0 * 1024.0
        rss_children = [c.memory_info().rss / mb for c in children]
        uss = sum(p.memory_full_info().uss for p in [parent, *children]) / mb
        rss_parent = parent.memory_info().rss / mb
        return {
            "rss_total": rss_parent + sum(rss_children),
            "rss_parent": rss_parent,
            "rss_child_max": max(rss_children, default=0.0),
            "uss_total": uss,
            "procs": float(1 + len(children)),
        }

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if still there after `timeout`."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # stragglers, e.g. pool children
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for t in self._threads:
            t.join(timeout=2)
