"""The async client on real workers (redis-server and SQLite): ``await task.adelay()``,
``await result.aget()`` / ``await result``, ``await group_result``, and an event loop
that keeps ticking while a thousand sends and a thousand waits run on it."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from conveyor.canvas import group
from conveyor.exceptions import TimeoutError

from ..apps import aio as aio_module
from ..support import connected

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def aio(worker_broker_url: str, spawn_worker: Any) -> Iterator[ModuleType]:
    spawn_worker("tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "1000")
    with connected(aio_module.app, worker_broker_url):
        yield aio_module


class Ticker:
    """A coroutine that wakes every millisecond and records the longest gap between two
    wake-ups: how long the loop was kept from running anything else."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.gaps: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.gaps.append(now - last)
            last = now


def test_a_thousand_sends_and_waits_keep_the_loop_running(aio: ModuleType) -> None:
    """1,000 tasks of 0.5 s each: sent by 100 senders at once (as requests would), then
    all 1,000 waited on at once. One blocking ``.get()`` would hold the loop until its
    task ended (0.5 s); here the loop is only held for the CPU work of one turn (the
    1,000 waits starting together: ~20 ms on a quiet machine)."""

    async def main() -> tuple[list[float], float, float]:
        await (await aio.double.adelay(0)).aget(timeout=10)  # connected, worker idle

        async def sender() -> list[Any]:
            return [await aio.nap.adelay(0.5) for _ in range(10)]

        started = time.perf_counter()
        with Ticker() as ticker:
            batches = await asyncio.gather(*(sender() for _ in range(100)))
            sent = [result for batch in batches for result in batch]
            values = await asyncio.gather(*(r.aget(timeout=30) for r in sent))
        return values, ticker.max_gap, time.perf_counter() - started

    values, max_gap, took = asyncio.run(main())
    assert values == [0.5] * 1000
    assert took > 0.5  # the tasks ran while the loop waited
    # Half a task's time: any wait that blocked the loop would take at least a whole one.
    assert max_gap < 0.25, f"the loop stalled {max_gap * 1000:.1f} ms (run took {took:.2f}s)"


def test_await_a_result_a_group_a_failure_and_a_timeout(aio: ModuleType) -> None:
    async def main() -> None:
        result = await aio.double.aapply_async((21,), countdown=0.1)
        assert await result == 42  # the shorthand
        assert await result.astate() == "SUCCESS"
        group_result = group(aio.double.s(i) for i in range(20)).apply_async()
        assert await group_result.aget(timeout=10) == [2 * i for i in range(20)]
        assert await group_result == [2 * i for i in range(20)]
        with pytest.raises(ValueError, match="async boom"):
            await (await aio.boom.adelay()).aget(timeout=10)
        failed = await (await aio.boom.adelay()).aget(timeout=10, propagate=False)
        assert isinstance(failed, ValueError)
        slow = await aio.nap.adelay(5.0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await slow.aget(timeout=0.3)
        assert time.monotonic() - started < 2

    asyncio.run(main())


def test_the_sync_api_inside_a_loop_stalls_it_no_longer_than_a_send(aio: ModuleType) -> None:
    """``.delay()`` in a coroutine holds the loop for the send and nothing more: the
    ticker's gaps stay at the scale of one send (~0.1 ms), not of a round trip to the
    worker. Judged on the 90th percentile: one gap can be the machine's, every gap
    would be ours."""

    async def main() -> tuple[list[float], float]:
        aio.double.delay(0).get(timeout=10)  # connected
        sends: list[float] = []
        with Ticker() as ticker:
            for i in range(200):
                started = time.perf_counter()
                aio.double.delay(i)
                sends.append(time.perf_counter() - started)
                await asyncio.sleep(0.002)
        return ticker.gaps, statistics.median(sends)

    gaps, typical_send = asyncio.run(main())
    p90 = sorted(gaps)[int(len(gaps) * 0.9)]
    assert p90 < typical_send + 0.02, (p90, typical_send)
