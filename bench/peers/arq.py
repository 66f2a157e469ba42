"""arq (asyncio, Redis): one process per ``arq`` command, so two commands side by side.

Each process runs up to ``max_jobs`` = 10 jobs at once on its event loop (arq's
default); the body is the same one INCR, awaited on an asyncio Redis client. The
worker's queue poll (``poll_delay``, 0.5 s) and ``Job.result``'s poll (0.5 s) are
arq's defaults, as a user gets them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from counter import redis_url
from peers.base import Peer, abump, executable, processes


async def noop(ctx: dict[str, Any], i: int) -> None:
    await abump()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop]
    redis_settings = RedisSettings.from_dsn(redis_url())


PEER = Peer(
    name="arq",
    version_of="arq",
    worker=lambda n: processes([executable("arq"), "peers.arq.WorkerSettings"], n),
    concurrency="two `arq` processes (no process option), each up to 10 jobs at once "
    "on its event loop (arq's default `max_jobs`)",
)


class _Client:
    pool: ArqRedis

    async def send(self, i: int) -> Any:
        if not hasattr(self, "pool"):
            self.pool = await create_pool(WorkerSettings.redis_settings)
        return await self.pool.enqueue_job("noop", i)

    async def send_many(self, args: Sequence[tuple[int]]) -> None:
        for a in args:  # no bulk enqueue in arq
            await self.send(*a)

    async def wait(self, handle: Any, timeout: float) -> None:
        await handle.result(timeout=timeout)


def client() -> _Client:
    return _Client()
