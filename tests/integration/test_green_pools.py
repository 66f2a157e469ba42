"""The gevent and eventlet pools, with real workers on the private redis-server.

The same worker of each pool runs the whole story: it is patched (its socket, sleep and
locks are green), 100 one-second sleeps on ``-c 100`` end in about one second with each
task seeing its own request, the soft limit interrupts a sleep, the hard limit ends a
task, a terminate revokes a running one, and a SIGTERM lets a running task finish and be
acknowledged before the process exits 0. The contract suite runs on ``-P gevent`` too
(tests/contract/test_worker.py, ``redis-gevent``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from conveyor import TimeLimitExceeded, states
from conveyor.exceptions import ConfigurationError, MessageError, TaskRevokedError
from conveyor.worker.main import Worker

from ..apps import green
from ..support import connected, wait_for

pytestmark = pytest.mark.timeout(90)

GREEN_MODULES = {"gevent": "gevent", "eventlet": "eventlet"}


@pytest.fixture
def tasks(redis_url: str) -> Iterator[ModuleType]:
    with connected(green.app, redis_url):
        yield green


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_a_green_pool_runs_100_sleeps_at_once_with_limits_and_warm_shutdown(
    tasks: ModuleType, redis_url: str, spawn_worker: Any, pool: str
) -> None:
    worker = spawn_worker("tests.apps.green", redis_url, "-P", pool, "-c", "100")
    stdlib = tasks.patched.delay().get(timeout=10)
    assert all(module.startswith(GREEN_MODULES[pool]) for module in stdlib.values()), stdlib

    started = time.monotonic()
    results = [tasks.timed_nap.delay(1.0) for _ in range(100)]
    ran = [r.get(timeout=15) for r in results]
    elapsed = time.monotonic() - started
    assert [task_id for task_id, _ in ran] == [r.id for r in results]
    assert elapsed < 5.0, f"100 one-second sleeps on -c 100 took {elapsed:.2f}s"
    # All at once: none waited behind another's sleep in a greenlet that leased two.
    starts = [at for _, at in ran]
    assert max(starts) - min(starts) < 0.9, f"started over {max(starts) - min(starts):.2f}s"

    assert tasks.soft_limited.delay().get(timeout=10) == "soft: soft time limit (0.5s) exceeded"
    hard = tasks.hard_limited.delay()
    with pytest.raises(TimeLimitExceeded):
        hard.get(timeout=10)

    doomed = tasks.nap.delay(30)
    wait_for(lambda: doomed.state == states.STARTED, 10, what="the long nap to start")
    tasks.app.control.revoke(doomed.id, terminate=True)
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=10)

    running = tasks.nap.delay(1.5)
    wait_for(lambda: running.state == states.STARTED, 10, what="the nap to start")
    worker.send_signal(signal.SIGTERM)
    assert running.get(timeout=10) == running.id  # finished, not cut short
    assert worker.wait(10) == 0
    assert tasks.app.broker.inflight_count() == 0  # acked before the exit


def test_a_task_that_blocks_the_hub_past_its_hard_limit_ends_the_process(
    tasks: ModuleType, redis_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker("tests.apps.green", redis_url, "-P", "gevent", "-c", "4")
    tasks.hogs_the_hub.delay(30)
    # time_limit 0.5 s + the 2 s grace: the OS-thread watch ends the process.
    assert worker.wait(15) == 3
    assert "hub has been blocked" in worker.output()
    assert "past its time limit (0.5s)" in worker.output()


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_an_async_task_on_a_green_pool_is_dead_lettered_with_the_reason(
    pool: str, tasks: ModuleType, redis_url: str, spawn_worker: Any
) -> None:
    """Not run on a loop that would block the hub for every greenlet: refused, kept in
    the dead-letter queue to be replayed on a worker that can run it, and the pool
    goes on."""
    worker = spawn_worker("tests.apps.green", redis_url, "-P", pool, "-c", "4")
    result = tasks.awaits.delay(7)
    with pytest.raises(MessageError, match=f"cannot run on the {pool} pool"):
        result.get(timeout=10)
    assert result.state == states.REJECTED
    (letter,) = tasks.app.coordinator.dead_letters()
    assert f"cannot run on the {pool} pool" in letter.reason
    assert tasks.nap.delay(0.01).get(timeout=10)
    assert "async def" in worker.output() and "awaits" in worker.output()  # warned at start


def test_a_green_pool_refuses_to_run_unpatched(tasks: ModuleType) -> None:
    # This test process was not monkey-patched: the worker says how to start it.
    with pytest.raises(ConfigurationError, match="monkey-patched before anything else"):
        Worker(tasks.app, pool="gevent", concurrency=2).start()
