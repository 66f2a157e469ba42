"""Time limits, revocation and acknowledgement policy, on every pool, with real workers."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import redis

from conveyor import SoftTimeLimitExceeded, TimeLimitExceeded, states
from conveyor.exceptions import TaskRevokedError, WorkerLostError

from ..support import wait_for


def _broker() -> str:
    """The broker this test's app was pointed at (redis or sqlite: see the fixture)."""
    return os.environ["CONVEYOR_BROKER_URL"]


APP = "tests.apps.limits"
POOLS = [("prefork", "2"), ("threads", "2"), ("solo", "1")]


@pytest.fixture
def limits(redis_url: str, worker_broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CONVEYOR_BROKER_URL", worker_broker_url)
    monkeypatch.setenv("TEST_SIDE_URL", redis_url)
    from tests.apps import limits as module

    module.app.close()
    module._client = None
    return module


def _worker(spawn_worker: Any, redis_url: str, pool: str, concurrency: str, **kw: Any) -> Any:
    return spawn_worker(APP, _broker(), "-P", pool, "-c", concurrency, **kw)


@pytest.mark.parametrize(("pool", "concurrency"), POOLS)
def test_soft_limit_lets_the_task_clean_up(
    limits: Any, redis_url: str, spawn_worker: Any, pool: str, concurrency: str
) -> None:
    _worker(spawn_worker, redis_url, pool, concurrency)
    started = time.monotonic()
    assert limits.cleans_up.delay("a").get(timeout=10) == "cleaned up"
    assert time.monotonic() - started < 2.5
    assert SoftTimeLimitExceeded.__name__  # the type users catch is exported


@pytest.mark.parametrize(("pool", "concurrency"), POOLS)
def test_hard_limit_ends_a_task_that_ignores_the_soft_one(
    limits: Any, redis_url: str, spawn_worker: Any, pool: str, concurrency: str
) -> None:
    worker = _worker(spawn_worker, redis_url, pool, concurrency)
    result = limits.ignores_soft_limit.delay("h")
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=15)
    assert time.monotonic() - started < 6
    assert result.state == states.FAILURE
    r = redis.Redis.from_url(redis_url)
    assert r.get("soft:h") == b"1"
    # the worker goes on, and the killed task is not delivered again
    assert limits.quick.delay(3).get(timeout=10) == 3
    time.sleep(1.5)
    assert limits.runs("h") == 1
    assert worker.process.poll() is None


@pytest.mark.parametrize(("pool", "concurrency"), POOLS)
def test_revoke_before_the_worker_starts_is_honoured(
    limits: Any, redis_url: str, spawn_worker: Any, pool: str, concurrency: str
) -> None:
    doomed = limits.long_running.delay("doomed", 0.1)
    doomed.revoke()
    _worker(spawn_worker, redis_url, pool, concurrency)
    with pytest.raises(TaskRevokedError):
        doomed.get(timeout=10)
    assert doomed.state == states.REVOKED
    assert limits.runs("doomed") == 0
    assert limits.quick.delay(1).get(timeout=10) == 1


@pytest.mark.parametrize(("pool", "concurrency"), POOLS)
def test_revoke_with_terminate_stops_a_running_task(
    limits: Any, redis_url: str, spawn_worker: Any, pool: str, concurrency: str
) -> None:
    worker = _worker(spawn_worker, redis_url, pool, concurrency)
    result = limits.long_running.delay("t", 30)
    r = redis.Redis.from_url(redis_url)
    wait_for(lambda: r.exists("started:t"), 10, what="task start")
    limits.app.control.revoke(result.id, terminate=True)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert result.state == states.REVOKED
    if pool != "solo":
        assert limits.quick.delay(2).get(timeout=10) == 2
    time.sleep(1)
    assert limits.runs("t") == 1
    if pool != "solo":
        assert worker.process.poll() is None


def test_expired_tasks_are_revoked_not_run(limits: Any, redis_url: str, spawn_worker: Any) -> None:
    result = limits.long_running.apply_async(("exp", 0.1), expires=0.2)
    time.sleep(0.4)
    _worker(spawn_worker, redis_url, "prefork", "1")
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=10)
    assert limits.runs("exp") == 0


@pytest.mark.chaos
def test_acks_late_false_is_at_most_once(limits: Any, redis_url: str, spawn_worker: Any) -> None:
    _worker(spawn_worker, redis_url, "prefork", "1")
    limits.at_most_once.delay("once")
    wait_for(lambda: limits.runs("once") >= 1, 10, what="first run")
    assert limits.quick.delay(4).get(timeout=15) == 4  # a new child took over
    time.sleep(1)
    assert limits.runs("once") == 1


@pytest.mark.chaos
def test_reject_on_worker_lost_off_records_worker_lost(
    limits: Any, redis_url: str, spawn_worker: Any
) -> None:
    _worker(spawn_worker, redis_url, "prefork", "1", env={"TEST_REJECT_ON_WORKER_LOST": "0"})
    result = limits.dies.delay("lost")
    with pytest.raises(WorkerLostError):
        result.get(timeout=15)
    time.sleep(1)
    assert limits.runs("lost") == 1


@pytest.mark.parametrize(("pool", "concurrency"), [("prefork", "1"), ("threads", "1")])
def test_acks_on_failure_or_timeout_off_dead_letters_failures(
    limits: Any, spawn_worker: Any, pool: str, concurrency: str
) -> None:
    _worker(spawn_worker, _broker(), pool, concurrency, env={"TEST_ACKS_ON_FAILURE": "0"})
    failed = limits.fails.delay("nope")
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    timed_out = limits.ignores_soft_limit.delay("dl")
    with pytest.raises(TimeLimitExceeded):
        timed_out.get(timeout=15)
    dlq = limits.app.coordinator
    wait_for(lambda: len(dlq.dead_letters()) == 2, 10, what="two dead letters")
    reasons = sorted(d.reason for d in dlq.dead_letters())
    assert reasons[0].startswith("failed with TimeLimitExceeded")
    assert reasons[1].startswith("failed with ValueError: nope")
    assert all("task_acks_on_failure_or_timeout is off" in r for r in reasons)


def test_ignore_result_stores_nothing(limits: Any, redis_url: str, spawn_worker: Any) -> None:
    _worker(spawn_worker, _broker(), "prefork", "1")
    result = limits.forgettable.delay("ig")
    wait_for(lambda: limits.runs("ig") == 1, 10, what="the task to run")
    assert limits.quick.delay(1).get(timeout=10) == 1  # ran after it: it has finished
    assert result.state == states.PENDING  # nothing was stored
    assert limits.app.backend.get(result.id) is None
