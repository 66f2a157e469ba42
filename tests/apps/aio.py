"""The test app of the asyncio pool and the async client: ``async def`` tasks beside sync
ones. Settings come from the environment (``CONVEYOR_BROKER_URL``)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from conveyor import Conveyor
from conveyor.exceptions import SoftTimeLimitExceeded

app = Conveyor("tests.apps.aio")


@app.task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task
async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def sync_nap(seconds: float) -> float:
    """A sync body: on the asyncio pool it runs on the thread pool, not on the loop."""
    time.sleep(seconds)
    return seconds


@app.task(bind=True)
async def whoami(self: Any) -> list[Any]:
    """The request seen after an await: each coroutine its own."""
    await asyncio.sleep(0.05)
    return [self.request.id, os.getpid()]


@app.task(soft_time_limit=0.5)
async def polite(seconds: float) -> str:
    """Catches its soft limit where it waits and cleans up."""
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded as exc:
        return f"cleaned up: {exc}"
    return "slept"


@app.task(soft_time_limit=0.5)
async def careless(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@app.task(time_limit=0.5)
async def overdue(seconds: float) -> str:
    """Awaits past its hard limit: it is cancelled with TimeLimitExceeded, no process
    ends."""
    await asyncio.sleep(seconds)
    return "slept"


@app.task(time_limit=1)
async def hog(seconds: float) -> str:
    """Blocks the event loop (never awaits): only the process's end can stop it."""
    time.sleep(seconds)
    return "hogged"


@app.task(bind=True, autoretry_for=(KeyError,), retry_kwargs={"countdown": 0.05}, max_retries=3)
async def flaky(self: Any, fail_times: int) -> int:
    await asyncio.sleep(0)
    if self.request.retries < fail_times:
        raise KeyError("not yet")
    return int(self.request.retries)


@app.task
async def boom() -> None:
    await asyncio.sleep(0)
    raise ValueError("async boom")
