"""Typed events on a real worker (redis and sqlite): each emitted once, with Celery's
fields, from the worker's one emission point and the producer's."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest
import redis

from conveyor import states

from ..support import wait_for

APP = "tests.apps.events"


@pytest.fixture
def events_app(redis_url: str, worker_broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CONVEYOR_BROKER_URL", worker_broker_url)
    monkeypatch.setenv("TEST_SIDE_URL", redis_url)
    from tests.apps import events as module

    module.app.close()
    module._client = None
    return module


def _recorded(redis_url: str) -> list[dict[str, Any]]:
    r = redis.Redis.from_url(redis_url)
    return [json.loads(line) for line in r.lrange("events", 0, -1)]


def test_each_task_and_worker_event_is_emitted_once_with_celerys_fields(
    events_app: Any, redis_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker(APP, os.environ["CONVEYOR_BROKER_URL"], "-c", "1", "-n", "ev@%h")
    ok = events_app.add.delay(2, y=3)
    assert ok.get(timeout=10) == 5
    broken = events_app.breaks.delay("x")
    with pytest.raises(KeyError):
        broken.get(timeout=10)
    retried = events_app.retry_once.delay("r")
    assert retried.get(timeout=10) == "done"
    revoked = events_app.add.apply_async((1,), countdown=2.5)  # revocations: re-read each 1 s
    revoked.revoke()
    with pytest.raises(Exception, match="revoked"):
        revoked.get(timeout=10)
    unknown = events_app.app.send_task("tests.apps.events.not_on_the_worker", (1,))
    with pytest.raises(Exception, match="unknown task name"):
        unknown.get(timeout=10)
    assert unknown.state == states.REJECTED
    worker.stop()

    recorded = _recorded(redis_url)
    sent_here = Counter((e["uuid"], e["kind"]) for e in recorded if e["emitted_by"] == os.getpid())
    assert sent_here == Counter(
        (result.id, "call") for result in (ok, broken, retried, revoked, unknown)
    )
    sent_ok = next(e for e in recorded if e["type"] == "task-sent" and e["uuid"] == ok.id)
    assert (sent_ok["name"], sent_ok["args"], sent_ok["kwargs"]) == (
        "tests.apps.events.add",
        "[2]",
        "{'y': 3}",
    )
    assert (sent_ok["queue"], sent_ok["routing_key"], sent_ok["retries"]) == ("celery",) * 2 + (0,)
    sent_later = next(e for e in recorded if e["type"] == "task-sent" and e["uuid"] == revoked.id)
    assert sent_later["eta"] == pytest.approx(sent_later["timestamp"] + 2.5, abs=0.5)

    events = [e for e in recorded if e["emitted_by"] != os.getpid()]
    # The worker sends the retry through its producer: announced there, once.
    assert [(e["uuid"], e["kind"], e["retries"]) for e in events if e["type"] == "task-sent"] == [
        (retried.id, "retry", 1)
    ]
    count = Counter((e["type"], e.get("uuid")) for e in events)
    by = {(e["type"], e.get("uuid")): e for e in events}

    assert count[("task-received", ok.id)] == 1
    assert count[("task-started", ok.id)] == 1
    assert count[("task-succeeded", ok.id)] == 1
    received = by[("task-received", ok.id)]
    assert received["name"] == "tests.apps.events.add"
    assert (received["args"], received["kwargs"]) == ("[2]", "{'y': 3}")
    assert (received["retries"], received["queue"]) == (0, "celery")
    assert received["hostname"].startswith("ev@")
    assert received["root_id"] == ok.id
    assert by[("task-started", ok.id)]["pid"] == by[("task-started", ok.id)]["emitted_by"]
    succeeded = by[("task-succeeded", ok.id)]
    assert succeeded["result"] == "5"
    assert succeeded["runtime"] >= 0

    assert count[("task-failed", broken.id)] == 1
    assert count[("task-succeeded", broken.id)] == 0
    failed = by[("task-failed", broken.id)]
    assert failed["exception"] == "KeyError('x')"
    assert "KeyError" in failed["traceback"]

    assert count[("task-received", retried.id)] == 2  # the first run and the retry
    assert count[("task-started", retried.id)] == 2
    assert count[("task-retried", retried.id)] == 1
    assert count[("task-succeeded", retried.id)] == 1
    retry = by[("task-retried", retried.id)]
    assert retry["exception"] == "ValueError('first try of r')"
    assert retry["reason"]

    assert count[("task-revoked", revoked.id)] == 1
    assert count[("task-started", revoked.id)] == 0
    gone = by[("task-revoked", revoked.id)]
    assert (gone["terminated"], gone["expired"]) == (False, False)

    assert count[("task-rejected", unknown.id)] == 1
    assert count[("task-received", unknown.id)] == 0
    rejected = by[("task-rejected", unknown.id)]
    assert "unknown task name" in rejected["reason"]
    assert rejected["name"] == "tests.apps.events.not_on_the_worker"

    worker_events = Counter(e["type"] for e in events if e["type"].startswith("worker-"))
    assert worker_events["worker-online"] == 1
    assert worker_events["worker-offline"] == 1
    assert worker_events["worker-heartbeat"] >= 1
    online = next(e for e in events if e["type"] == "worker-online")
    assert online["hostname"] == received["hostname"]
    assert online["sw_ident"] == "conveyor"
    assert online["info"]["queues"] == ["celery"]


def test_tasks_the_worker_ends_itself_are_announced_once(
    events_app: Any, redis_url: str, spawn_worker: Any
) -> None:
    """A hard time limit and a terminate end the task in the prefork supervisor, not in
    the executor: the supervisor announces them, once."""
    spawn_worker(APP, os.environ["CONVEYOR_BROKER_URL"], "-c", "1")
    late = events_app.overstays.delay(30)
    with pytest.raises(Exception, match="time limit"):
        late.get(timeout=20)
    stopped = events_app.naps.delay(30)

    def started() -> bool:
        return any(
            e["type"] == "task-started" and e["uuid"] == stopped.id for e in _recorded(redis_url)
        )

    wait_for(started, 20, what="the napping task to start")
    stopped.revoke(terminate=True)
    with pytest.raises(Exception, match="terminated"):
        stopped.get(timeout=20)

    def announced() -> bool:  # just after the state is stored
        seen = {(e["type"], e.get("uuid")) for e in _recorded(redis_url)}
        return {("task-failed", late.id), ("task-revoked", stopped.id)} <= seen

    wait_for(announced, 10, what="both ends announced")
    events = [e for e in _recorded(redis_url) if e["emitted_by"] != os.getpid()]
    count = Counter((e["type"], e.get("uuid")) for e in events)
    assert count[("task-failed", late.id)] == 1
    assert count[("task-succeeded", late.id)] == 0
    failed = next(e for e in events if e["type"] == "task-failed")
    assert failed["exception"].startswith("TimeLimitExceeded(")
    assert failed["name"] == "tests.apps.events.overstays"
    assert count[("task-revoked", stopped.id)] == 1
    revoked = next(e for e in events if e["type"] == "task-revoked")
    assert (revoked["terminated"], revoked["expired"]) == (True, False)
