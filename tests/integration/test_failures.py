"""Issue 4 on Redis with real workers: retries, progress, poison tasks, signals."""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
import redis

from conveyor import states
from conveyor.exceptions import MaxRetriesExceededError

from ..support import wait_for


def _broker() -> str:
    """The broker this test's app was pointed at (redis or sqlite: see the fixture)."""
    return os.environ["CONVEYOR_BROKER_URL"]


APP = "tests.apps.failures"


@pytest.fixture
def failures(redis_url: str, worker_broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CONVEYOR_BROKER_URL", worker_broker_url)
    monkeypatch.setenv("TEST_SIDE_URL", redis_url)
    from tests.apps import failures as module

    module.app.close()
    module._client = None
    return module


def test_autoretry_backoff_grows_with_jitter_in_bounds(
    failures: Any, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, _broker(), "-c", "2")
    result = failures.flaky.delay("k", 3)
    assert result.get(timeout=20) == 3
    r = redis.Redis.from_url(redis_url)
    times = [float(t) for t in r.lrange("attempts:k", 0, -1)]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps):
        window = 0.2 * 2**n
        # equal jitter: within [window/2, window], plus scheduling slack
        assert window / 2 - 0.02 <= gap <= window + 0.25, (n, gap, gaps)
    assert gaps[0] < gaps[2], gaps  # the delays really grow


def test_retry_raises_by_itself_and_waits_in_the_broker(
    failures: Any, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, _broker(), "-c", "1")
    assert failures.retry_without_raise.delay("r").get(timeout=10) == "done"
    r = redis.Redis.from_url(redis_url)
    assert int(r.get("runs:r")) == 2
    assert r.get("after-retry:r") is None


def test_retries_exhausted_fail_with_the_last_exception(
    failures: Any, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, _broker(), "-c", "1")
    with pytest.raises(KeyError, match="last"):
        failures.always_retries.delay(True).get(timeout=10)
    with pytest.raises(MaxRetriesExceededError):
        failures.always_retries.delay(False).get(timeout=10)


def test_retry_state_is_visible_between_attempts(
    failures: Any, redis_url: str, spawn_worker: Any
) -> None:
    result = failures.flaky.apply_async(("slow", 1))
    # no worker yet: pending
    assert result.state == states.PENDING
    spawn_worker(APP, _broker(), "-c", "1")
    wait_for(lambda: result.state in (states.RETRY, states.SUCCESS), 10, what="retry state")
    assert result.get(timeout=10) == 1


def test_progress_is_readable_while_the_task_runs(
    failures: Any, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, _broker(), "-c", "1")
    result = failures.progress.delay("p")
    r = redis.Redis.from_url(redis_url)
    wait_for(lambda: r.exists("progress-set:p"), 10, what="progress")
    assert result.state == "PROGRESS"
    assert result.info == {"done": 1, "total": 2}
    assert not result.ready()
    r.set("release:p", 1)
    assert result.get(timeout=10) == "finished"


@pytest.mark.chaos
def test_a_task_that_kills_its_worker_is_dead_lettered_after_max_deliveries(
    failures: Any, redis_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker(APP, _broker(), "-c", "1", env={"TEST_MAX_DELIVERIES": "3"})
    result = failures.poison.delay("x")
    with pytest.raises(Exception, match="delivered 4 times"):
        result.get(timeout=30)
    r = redis.Redis.from_url(redis_url)
    assert int(r.get("poison-runs:x")) == 3
    assert result.state == states.REJECTED
    assert any("poison" in d.body.decode() for d in failures.app.coordinator.dead_letters())
    # the worker goes on
    assert failures.quick.delay(7).get(timeout=10) == 7
    assert "ready." in worker.output()


def test_signals_fire_in_the_worker_with_celery_arguments(
    failures: Any, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, _broker(), "-c", "1")
    result = failures.quick.delay(5)
    assert result.get(timeout=10) == 5
    r = redis.Redis.from_url(redis_url)
    wait_for(lambda: r.llen("signals") >= 2, 5, what="signals")
    events = [e.decode() for e in r.lrange("signals", 0, -1)]
    assert f"prerun:tests.apps.failures.quick:{result.id}" in events
    assert f"postrun:SUCCESS:{result.id}:5" in events


def test_eager_retries_run_inline() -> None:
    from tests.apps import failures as module

    module.app.conf.task_always_eager = True
    try:
        with pytest.raises(KeyError):
            module.always_retries.delay(True).get()
    finally:
        module.app.conf.task_always_eager = False


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_every_signal_fires_with_celery_arguments(
    failures: Any, redis_url: str, spawn_worker: Any, pool: str
) -> None:
    worker = spawn_worker(APP, _broker(), "-P", pool, "-c", "1", "-n", "sig@%h")
    r = redis.Redis.from_url(redis_url)
    assert failures.quick.delay(5).get(timeout=10) == 5
    broken = failures.breaks.delay("x")
    with pytest.raises(KeyError):
        broken.get(timeout=10)
    retried = failures.retry_without_raise.delay("sig")
    assert retried.get(timeout=10) == "done"
    revoked = failures.quick.apply_async(
        (1,), countdown=2.5
    )  # workers re-read revocations each second
    revoked.revoke()
    with pytest.raises(Exception, match="revoked"):
        revoked.get(timeout=10)
    worker.stop()
    events = [e.decode() for e in r.lrange("signals", 0, -1)]
    assert "success:tests.apps.failures.quick:5" in events
    assert f"failure:{broken.id}:KeyError" in events
    assert f"retry:{retried.id}" in events
    assert f"revoked:{revoked.id}:False:False" in events
    assert any(e.startswith("worker_ready:sig@") for e in events)
    assert any(e.startswith("worker_shutdown:sig@") for e in events)
