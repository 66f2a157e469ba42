"""The asyncio pool on real workers (redis-server and SQLite): up to ``-c`` coroutines at
once on one event loop, time limits that reach inside a coroutine, a blocked loop ended
by its hard limit, and ``async def`` tasks on the other pools."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from conveyor.exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded

from ..apps import aio as aio_module
from ..support import connected

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def aio(worker_broker_url: str) -> Iterator[ModuleType]:
    with connected(aio_module.app, worker_broker_url):
        yield aio_module


def test_a_thousand_one_second_sleeps_take_about_a_second_on_one_process(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "1000")
    assert aio.double.delay(1).get(timeout=10) == 2  # up and idle
    started = time.monotonic()
    results = aio.nap.delay_many([(1.0,)] * 1000)
    assert [r.get(timeout=30) for r in results] == [1.0] * 1000
    took = time.monotonic() - started
    # A capability check, not a benchmark: sequentially it would take 1,000 s.
    assert took < 5, f"1,000 concurrent 1 s sleeps took {took:.2f}s"


def test_tasks_are_declared_like_any_task_bind_retries_failures_and_canvas(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any
) -> None:
    from conveyor.canvas import chain, group

    spawn_worker("tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "50")
    whoami = [aio.whoami.delay() for _ in range(20)]
    seen = [r.get(timeout=10) for r in whoami]
    assert [s[0] for s in seen] == [r.id for r in whoami]  # each coroutine its own request
    assert aio.flaky.delay(2).get(timeout=10) == 2  # autoretry_for, twice
    with pytest.raises(ValueError, match="async boom"):
        aio.boom.delay().get(timeout=10)
    assert chain(aio.double.s(1), aio.double.s(), aio.double.s())().get(timeout=10) == 8
    assert group(aio.double.s(i) for i in range(10))().get(timeout=10) == [
        2 * i for i in range(10)
    ]
    assert aio.add.delay(2, 3).get(timeout=10) == 5  # a sync task on the same pool


def test_a_soft_limit_cancels_the_coroutine_which_sees_it(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "10")
    started = time.monotonic()
    polite, careless = aio.polite.delay(30), aio.careless.delay(30)
    assert polite.get(timeout=10) == "cleaned up: soft time limit (0.5s) exceeded"
    with pytest.raises(SoftTimeLimitExceeded):
        careless.get(timeout=10)
    assert time.monotonic() - started < 5


# The pool's own behaviour, the same on every broker: Redis only, to keep the suite's time.
@pytest.mark.parametrize("worker_broker_url", ["redis"], indirect=True)
def test_a_hard_limit_or_a_terminate_ends_an_awaiting_coroutine_and_its_process_stays(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker("tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "10")
    started = time.monotonic()
    overdue, napping = aio.overdue.delay(30), aio.nap.delay(30)
    with pytest.raises(TimeLimitExceeded, match=r"time limit \(0.5s\) exceeded"):
        overdue.get(timeout=10)
    time.sleep(0.2)
    napping.revoke(terminate=True)
    with pytest.raises(TaskRevokedError):
        napping.get(timeout=10)
    assert time.monotonic() - started < 6
    assert aio.add.delay(1, 2).get(timeout=10) == 3
    assert "exited with code" not in worker.output()  # the same process went on


# The pool's own behaviour, the same on every broker: Redis only, to keep the suite's time.
@pytest.mark.parametrize("worker_broker_url", ["redis"], indirect=True)
def test_processes_share_the_queue(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(
        "tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "10", "--processes", "2"
    )
    results = [aio.whoami.delay() for _ in range(100)]
    pids = {r.get(timeout=20)[1] for r in results}
    assert len(pids) == 2, pids


# The pool's own behaviour, the same on every broker: Redis only, to keep the suite's time.
@pytest.mark.parametrize("worker_broker_url", ["redis"], indirect=True)
def test_sync_bodies_run_on_threads_beside_the_loop(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "20")
    aio.add.delay(1, 1).get(timeout=10)
    started = time.monotonic()
    sync = [aio.sync_nap.delay(1.0) for _ in range(5)]
    naps = [aio.nap.delay(1.0) for _ in range(10)]
    assert [r.get(timeout=10) for r in sync + naps] == [1.0] * 15
    took = time.monotonic() - started
    assert took < 3, f"5 sync and 10 async 1 s tasks took {took:.2f}s: something ran in turn"


def test_a_blocked_loop_is_ended_by_the_hard_limit_and_loses_nothing(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker("tests.apps.aio", worker_broker_url, "-P", "asyncio", "-c", "10")
    aio.add.delay(1, 1).get(timeout=10)
    napping = aio.nap.delay(2.0)
    time.sleep(0.2)  # it is running on the loop when the hog blocks it
    started = time.monotonic()
    hog = aio.hog.delay(60)
    with pytest.raises(TimeLimitExceeded):
        hog.get(timeout=15)
    assert time.monotonic() - started < 8
    assert napping.get(timeout=15) == 2.0  # went back to the queue with its process
    assert aio.add.delay(2, 2).get(timeout=10) == 4  # a new child took over
    assert "exited with code 3" in worker.output()


@pytest.mark.parametrize("worker_broker_url", ["redis"], indirect=True)
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_async_tasks_run_to_completion_on_the_other_pools(
    aio: ModuleType, worker_broker_url: str, spawn_worker: Any, pool: str
) -> None:
    spawn_worker("tests.apps.aio", worker_broker_url, "-P", pool, "-c", "2")
    assert aio.double.delay(21).get(timeout=10) == 42  # a value, never a coroutine
    assert aio.flaky.delay(1).get(timeout=10) == 1
    # The limit reaches inside the coroutine there too (the threads pool raises it by
    # type, so without the message).
    assert aio.polite.delay(30).get(timeout=10).startswith("cleaned up:")
    with pytest.raises(SoftTimeLimitExceeded):
        aio.careless.delay(30).get(timeout=10)
