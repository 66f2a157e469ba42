"""Promise 5 on a real Redis and a real worker: bad input never kills a worker."""

from __future__ import annotations

import json
import threading
from types import ModuleType
from typing import Any

import pytest

from conveyor import states
from conveyor.exceptions import MessageError
from conveyor.stores.coordination import DeadLetter
from conveyor.stores.redis.keys import RedisKeys

from ..support import RedisServer, wait_for

pytestmark = pytest.mark.redis

KEYS = RedisKeys("conveyor")


def _dead_letters(app_module: ModuleType) -> list[DeadLetter]:
    return app_module.app.coordinator.dead_letters()


def _still_works(app_module: ModuleType) -> None:
    assert app_module.add.delay(20, 22).get(timeout=5) == 42


def test_unserializable_argument_fails_at_delay_naming_it(
    basic: ModuleType, redis_server: RedisServer
) -> None:
    r = redis_server.client()
    with pytest.raises(TypeError, match=r"positional argument 1 \(lock\)"):
        basic.add.delay(1, threading.Lock())
    with pytest.raises(TypeError, match=r"keyword argument 'y' \(object\)"):
        basic.add.delay(x=1, y=object())
    assert r.llen(KEYS.level("celery", 0)) == 0, "nothing was sent"


def test_unknown_task_name_is_dead_lettered_and_the_worker_goes_on(
    basic: ModuleType, redis_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker("tests.apps.basic", redis_url, "-c", "1")
    result = basic.app.send_task("nope", args=[1])
    with pytest.raises(MessageError, match="unknown task name 'nope'"):
        result.get(timeout=5)
    assert result.state == states.REJECTED
    (letter,) = _dead_letters(basic)
    assert letter.queue == "celery"
    assert "unknown task name 'nope'" in letter.reason
    assert json.loads(letter.body)["id"] == result.id
    _still_works(basic)
    assert worker.children() and worker.process.poll() is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe\xfd\x00\x01garbage\x9c", "undecodable json message"),
        (b"\x00" + b"x" * 40, "malformed content-type frame"),
        (b"not json at all {", "undecodable json message"),
        (b'{"no": "envelope"}', "invalid envelope"),
        (b"", "empty message"),
        (b"\x00pickle\x00cos\nsystem\n(S'true'\ntR.", "not in accept_content"),
    ],
    ids=["binary", "bad-frame", "text", "json-not-envelope", "empty", "pickle"],
)
def test_garbage_in_the_queue_is_dead_lettered_and_the_worker_goes_on(
    body: bytes, reason: str, basic: ModuleType, redis_server: RedisServer, redis_url: str,
    spawn_worker: Any,
) -> None:
    r = redis_server.client()
    worker = spawn_worker("tests.apps.basic", redis_url, "-c", "1")
    r.lpush(KEYS.level("celery", 0), body)
    r.zadd(KEYS.wake("celery"), {"w": 0})
    wait_for(lambda: len(_dead_letters(basic)) == 1, 5, what="the garbage to be dead-lettered")
    (letter,) = _dead_letters(basic)
    assert reason in letter.reason
    assert letter.body == body
    assert letter.queue == "celery"
    _still_works(basic)
    assert r.llen(KEYS.level("celery", 0)) == 0
    assert worker.process.poll() is None


def test_arguments_that_do_not_fit_are_dead_lettered(
    tunable: ModuleType, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.tunable", redis_url, "-c", "1")
    too_many = tunable.app.send_task("tests.apps.tunable.fails", args=["a", "b"])
    unknown_kw = tunable.app.send_task("tests.apps.tunable.fails", kwargs={"nope": 1})
    for result in (too_many, unknown_kw):
        with pytest.raises(MessageError, match="arguments do not fit"):
            result.get(timeout=5)
    letters = _dead_letters(tunable)
    assert len(letters) == 2
    assert all("arguments do not fit the task" in letter.reason for letter in letters)

    # A TypeError raised inside the task is the task failing, not a bad call.
    inside = tunable.raises_type_error.delay()
    with pytest.raises(TypeError, match="raised inside the task"):
        inside.get(timeout=5)
    assert inside.state == states.FAILURE
    assert len(_dead_letters(tunable)) == 2
    assert tunable.record.delay("fine").get(timeout=5)
