"""Results on the Redis backend, through a real worker: errors, states, TTLs, forget,
and a get() that wakes the moment the result lands."""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import pytest

from conveyor import states
from conveyor.exceptions import TimeoutError
from conveyor.stores.redis.keys import RedisKeys

from ..support import RedisServer, wait_for

pytestmark = pytest.mark.redis

KEYS = RedisKeys("conveyor")
TUNED = {"TEST_TRACK_STARTED": "1", "TEST_RESULT_EXPIRES": "60"}


def test_get_raises_the_tasks_own_exception(
    basic: ModuleType, tunable: ModuleType, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.basic", redis_url, "-c", "1")
    spawn_worker("tests.apps.tunable", redis_url, "-c", "1", "-Q", "tunable")
    builtin = basic.boom.delay("builtin went wrong")
    own = tunable.fails.apply_async(("ours went wrong",), queue="tunable")

    with pytest.raises(ValueError, match="builtin went wrong"):
        builtin.get(timeout=5)
    with pytest.raises(tunable.CustomError, match="ours went wrong") as caught:
        own.get(timeout=5)
    assert type(caught.value) is tunable.CustomError

    returned = own.get(timeout=5, propagate=False)
    assert type(returned) is tunable.CustomError and returned.args == ("ours went wrong",)
    assert own.state == states.FAILURE and own.failed()
    assert "CustomError: ours went wrong" in own.traceback
    assert builtin.get(timeout=5, propagate=False).args == ("builtin went wrong",)


def test_states_go_pending_started_success(
    tunable: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    result = tunable.gated.delay("g")
    assert result.state == states.PENDING  # no worker yet
    spawn_worker("tests.apps.tunable", redis_url, "-c", "1", env=TUNED)
    wait_for(lambda: result.state == states.STARTED, 5, what="STARTED")
    assert not result.ready()
    assert 0 < r.pttl(KEYS.state(result.id)) <= 60_000

    r.rpush("gate:g", "open")
    assert result.get(timeout=5) == "opened"
    assert result.state == states.SUCCESS and result.successful() and result.ready()
    assert not r.exists(KEYS.state(result.id)), "the interim state gives way to the result"
    assert result.date_done is not None and abs(result.date_done.timestamp() - time.time()) < 5
    assert result.date_done.tzinfo is not None  # aware, in the app's timezone (Celery's)


def test_result_keys_expire_and_forget_deletes_them(
    tunable: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    spawn_worker("tests.apps.tunable", redis_url, "-c", "1", env=TUNED)
    result = tunable.record.delay("ttl")
    assert result.get(timeout=5) == result.id
    assert 50_000 < r.pttl(KEYS.result(result.id)) <= 60_000

    result.forget()
    assert not r.exists(KEYS.result(result.id), KEYS.state(result.id))
    assert result.state == states.PENDING
    with pytest.raises(TimeoutError):
        result.get(timeout=0.2)


def test_get_wakes_the_moment_the_result_lands(
    tunable: ModuleType, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.tunable", redis_url, "-c", "1")
    lags = []
    for _ in range(5):
        result = tunable.finished_at.delay(0.2)
        ended = result.get(timeout=5)
        lags.append(time.time() - ended)
    # A poll every 0.5 s (Celery's default interval) would lag 0.25 s on average.
    assert max(lags) < 0.1, f"get() woke {max(lags) * 1000:.0f} ms after the task ended"


def test_get_times_out_when_nothing_comes(tunable: ModuleType) -> None:
    result = tunable.record.AsyncResult("never-sent")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        result.get(timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 1.0
    assert result.state == states.PENDING


def test_a_leased_task_waiting_behind_another_is_received(
    tunable: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    """With task_track_started, a message a worker has leased but not started yet is
    RECEIVED (it waits behind the running one in the same process)."""
    r = redis_server.client()
    first = tunable.gated.delay("first")
    second = tunable.gated.delay("second")
    spawn_worker(
        "tests.apps.tunable",
        redis_url,
        "-c",
        "1",
        env={**TUNED, "TEST_PREFETCH_RELEASE": "30"},
    )
    wait_for(lambda: first.state == states.STARTED, 5, what="the first to start")
    assert second.state == states.RECEIVED
    r.rpush("gate:first", "open")
    r.rpush("gate:second", "open")
    assert second.get(timeout=5) == "opened" and second.state == states.SUCCESS
