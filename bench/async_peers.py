"""The async task of ``bench/async_bench.py`` for each system: one ``INCR`` on a counter
through redis.asyncio (one client per process, made on first use), after an optional
``asyncio.sleep`` (the 10 ms I/O task). Imported by the conveyor worker and by the arq
and taskiq workers, each under its own interpreter (arq pins redis-py < 6).

The system is picked by ``BENCH_ASYNC_SYSTEM`` (conveyor, arq, taskiq); the Redis URL
is ``BENCH_REDIS_URL`` (no default: nothing ever touches a Redis by accident).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import redis.asyncio

COUNTER_KEY = "bench:async:counter"
URL = os.environ["BENCH_REDIS_URL"]
SYSTEM = os.environ.get("BENCH_ASYNC_SYSTEM", "conveyor")
CONCURRENCY = int(os.environ.get("BENCH_ASYNC_CONCURRENCY", "100"))

_client: redis.asyncio.Redis | None = None


async def _count(io_seconds: float) -> None:
    global _client
    if io_seconds:
        await asyncio.sleep(io_seconds)
    if _client is None:
        _client = redis.asyncio.Redis.from_url(URL)
    await _client.incr(COUNTER_KEY)


if SYSTEM == "conveyor":
    from conveyor import Conveyor

    app = Conveyor("bench_async", broker=URL, backend=URL)

    @app.task(name="bench.async.work")
    async def work(io_seconds: float) -> None:
        await _count(io_seconds)

elif SYSTEM == "arq":
    from arq.connections import RedisSettings

    async def arq_work(ctx: dict[str, Any], io_seconds: float) -> None:
        await _count(io_seconds)

    class WorkerSettings:
        functions = [arq_work]
        redis_settings = RedisSettings.from_dsn(URL)
        max_jobs = CONCURRENCY
        keep_result = 3600  # results stored, as for the others

elif SYSTEM == "taskiq":
    from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

    broker = ListQueueBroker(URL).with_result_backend(RedisAsyncResultBackend(URL))

    @broker.task(task_name="bench.async.work")
    async def taskiq_work(io_seconds: float) -> None:
        await _count(io_seconds)
