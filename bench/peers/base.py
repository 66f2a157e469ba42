"""The one small interface every peer module implements (see ``peers/__init__.py``).

A peer module defines ``PEER`` (how to start its worker) and ``client()`` (how a
client sends tasks and waits for a result). The task body is the same everywhere:
one ``INCR bench:counter`` on the private Redis, results stored where the peer
supports it. The Redis URL comes from BENCH_REDIS_URL (no default, on purpose).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio

from counter import COUNTER_KEY, redis_url


@dataclass(frozen=True)
class Peer:
    name: str
    version_of: str  # the distribution whose version the table shows
    worker: Callable[[int], list[str]]  # processes -> worker command, run in bench/
    concurrency: str  # what "2 worker processes" means for this peer, for the doc


class Client(Protocol):
    """A blocking client: one call, the peer's bulk path, and waiting for one result."""

    def send(self, i: int) -> Any: ...

    def send_many(self, args: Sequence[tuple[int]]) -> None: ...

    def wait(self, handle: Any, timeout: float) -> None: ...


class AsyncClient(Protocol):
    """The same for asyncio-only peers (arq, taskiq): awaited inside one event loop."""

    async def send(self, i: int) -> Any: ...

    async def send_many(self, args: Sequence[tuple[int]]) -> None: ...

    async def wait(self, handle: Any, timeout: float) -> None: ...


def executable(name: str) -> str:
    """A console script of the running venv (or PATH): the worker CLI of a peer."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"no {name!r} command found beside {sys.executable} or on PATH")
    return found


def processes(cmd: list[str], n: int) -> list[str]:
    """n copies of a single-process worker command in one process group (for peers
    whose CLI has no process count); SIGTERM to the group reaches every copy."""
    one = " ".join(f"'{c}'" for c in cmd)
    return ["sh", "-c", " & ".join([one] * n) + " & wait"]


_async_client: redis.asyncio.Redis | None = None
_async_pid = 0


async def abump() -> None:
    """The task body for asyncio peers: the same one INCR, through an asyncio client
    made once per process (a blocking call would stall the peer's event loop)."""
    global _async_client, _async_pid
    if _async_client is None or _async_pid != os.getpid():
        _async_client = redis.asyncio.Redis.from_url(redis_url())
        _async_pid = os.getpid()
    await _async_client.incr(COUNTER_KEY)
