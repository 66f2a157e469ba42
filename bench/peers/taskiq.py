"""taskiq with taskiq-redis: ``ListQueueBroker`` and ``RedisAsyncResultBackend``.

``taskiq worker --workers 2``: two processes, each running up to 100 tasks at once on
its event loop (taskiq's default ``--max-async-tasks``); the body is the same one
INCR, awaited. ``wait_result`` polls every 0.2 s by default, as a user gets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from counter import redis_url
from peers.base import Peer, abump, executable

broker = ListQueueBroker(url=redis_url()).with_result_backend(
    RedisAsyncResultBackend(redis_url=redis_url())
)


@broker.task
async def noop(i: int) -> None:
    await abump()


PEER = Peer(
    name="taskiq",
    version_of="taskiq",
    worker=lambda n: [
        executable("taskiq"),
        "worker",
        "peers.taskiq:broker",
        "--workers",
        str(n),
        "--log-level",
        "WARNING",
    ],
    concurrency="`taskiq worker --workers 2`: two processes, each up to 100 tasks at "
    "once on its event loop (the default `--max-async-tasks`)",
)


class _Client:
    started = False

    async def send(self, i: int) -> Any:
        if not self.started:
            await broker.startup()
            self.started = True
        return await noop.kiq(i)

    async def send_many(self, args: Sequence[tuple[int]]) -> None:
        for a in args:  # no bulk enqueue in taskiq
            await self.send(*a)

    async def wait(self, handle: Any, timeout: float) -> None:
        result = await handle.wait_result(timeout=timeout)
        if result.is_err:
            raise RuntimeError(f"taskiq task failed: {result.error}")


def client() -> _Client:
    return _Client()
