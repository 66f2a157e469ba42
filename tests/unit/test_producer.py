"""The producer (conveyor/producer.py): one routing rule, hooks around every send in
order, a hook's error isolated, and each door announcing what it sent once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor, chord, group
from conveyor.events import BeforePublish, TaskSent
from conveyor.exceptions import Retry
from conveyor.message import Envelope, decode_envelope, encode_envelope
from conveyor.signals import after_task_publish, before_task_publish
from conveyor.task import Context, pop_request, push_request

JSON = frozenset({"json"})


class Tape:
    """Records every publish hook call, in order, with what the broker held then."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.calls: list[tuple[str, Any]] = []

    def _depth(self) -> int:
        return sum(q.ready + q.scheduled for q in self.app.broker.queues())

    def on_before_publish(self, event: BeforePublish) -> None:
        event.headers["traceparent"] = f"00-{event.envelope.id}"
        self.calls.append(("before", (event.envelope.id, event.queue, event.kind, self._depth())))

    def on_task_sent(self, event: TaskSent) -> None:
        self.calls.append(("sent", event))

    def sent(self) -> list[TaskSent]:
        return [event for name, event in self.calls if name == "sent"]


@pytest.fixture
def app() -> Iterator[Conveyor]:
    app = Conveyor("producer-test", broker=f"memory://{uuid.uuid4().hex}", set_as_current=False)
    yield app
    app.close()


@pytest.fixture
def tape(app: Conveyor) -> Tape:
    tape = Tape(app)
    app.events.subscribe(tape)
    return tape


def _bodies(app: Conveyor, queue: str) -> list[Envelope]:
    consumer = app.broker.consumer([queue], f"c-{uuid.uuid4().hex}", 10.0)
    try:
        return [decode_envelope(d.body, JSON) for d in consumer.fetch(100, 0.2)]
    finally:
        consumer.close()


# --- routing: one rule ------------------------------------------------------------------


def test_the_queue_is_the_calls_then_the_tasks_then_task_routes_then_the_default(
    app: Conveyor,
) -> None:
    app.conf.task_routes = [
        {"proj.exact": "exact-q"},
        {"proj.glob.*": {"queue": "glob-q"}},
        lambda name, *_: "callable-q" if name == "proj.by_callable" else None,
    ]
    exact = app.task(name="proj.exact")(lambda: None)
    globbed = app.task(name="proj.glob.one")(lambda: None)
    by_callable = app.task(name="proj.by_callable")(lambda: None)
    own = app.task(name="proj.exact2", queue="own-q")(lambda: None)
    plain = app.task(name="proj.plain")(lambda: None)
    producer = app.producer
    assert producer.queue_for(exact) == "exact-q"
    assert producer.queue_for(globbed) == "glob-q"
    assert producer.queue_for(by_callable) == "callable-q"
    assert producer.queue_for(own) == "own-q"
    assert producer.queue_for(plain) == "celery"
    assert producer.queue_for(own, "given-q") == "given-q"
    assert app.route("proj.exact") == "exact-q"  # the app's route is the producer's


def test_every_door_routes_the_same_way(app: Conveyor, tape: Tape) -> None:
    app.conf.task_routes = {"proj.*": "routed"}
    add = app.task(name="proj.add")(lambda x, y: x + y)
    tsum = app.task(name="proj.tsum")(lambda values: sum(values))
    add.delay(1, 1)
    add.delay_many([(1, 2), (3, 4)])
    group(add.s(i, i) for i in range(3)).apply_async()
    chord([add.s(1, 1)], tsum.s()).apply_async()
    assert {event.queue for event in tape.sent()} == {"routed"}
    assert len(_bodies(app, "routed")) == 1 + 2 + 3 + 1


# --- hooks: order, what they may change, their errors -------------------------------------


def test_before_runs_before_the_publish_and_sent_after_it(app: Conveyor, tape: Tape) -> None:
    add = app.task(name="proj.add")(lambda x, y: x + y)
    result = add.delay(2, 3)
    (before, sent) = tape.calls
    assert before == ("before", (result.id, "celery", "call", 0))  # not in the broker yet
    assert sent[0] == "sent"
    event = sent[1]
    assert (event.uuid, event.name, event.args, event.kwargs) == (result.id, "proj.add", [2, 3], {})
    assert (event.queue, event.kind, event.retries, event.eta) == ("celery", "call", 0, None)
    (message,) = _bodies(app, "celery")
    assert message.headers["traceparent"] == f"00-{result.id}"  # added by the hook, sent


def test_listeners_run_in_the_order_they_subscribed(app: Conveyor) -> None:
    order: list[str] = []

    class First:
        def on_before_publish(self, event: BeforePublish) -> None:
            order.append("first-before")

        def on_task_sent(self, event: TaskSent) -> None:
            order.append("first-sent")

    class Second:
        def on_before_publish(self, event: BeforePublish) -> None:
            order.append("second-before")

        def on_task_sent(self, event: TaskSent) -> None:
            order.append("second-sent")

    app.events.subscribe(First())
    app.events.subscribe(Second())
    app.task(name="proj.noop")(lambda: None).delay()
    assert order == ["first-before", "second-before", "first-sent", "second-sent"]


def test_a_hook_that_raises_is_logged_and_the_message_still_goes(
    app: Conveyor, tape: Tape, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def on_before_publish(self, event: BeforePublish) -> None:
            raise RuntimeError("before broke")

        def on_task_sent(self, event: TaskSent) -> None:
            raise RuntimeError("after broke")

    app.events.unsubscribe(tape)
    app.events.subscribe(Broken())
    app.events.subscribe(tape)  # after the broken one: still called
    with caplog.at_level(logging.ERROR, logger="conveyor.events"):
        result = app.task(name="proj.noop")(lambda: None).delay()
    assert [message.id for message in _bodies(app, "celery")] == [result.id]
    assert [event.uuid for event in tape.sent()] == [result.id]
    assert "before broke" in caplog.text and "after broke" in caplog.text


def test_an_argument_that_cannot_travel_fails_before_anything_is_announced(
    app: Conveyor, tape: Tape
) -> None:
    with pytest.raises(TypeError, match="positional argument 0"):
        app.task(name="proj.noop")(lambda x: None).delay(object())
    assert tape.sent() == []
    assert _bodies(app, "celery") == []


def test_with_nobody_listening_no_hook_object_is_built(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(**_: Any) -> None:
        raise AssertionError("built an event nobody listens to")

    for listener in app.events.listeners:  # e.g. Celery's signals, if a test connected one
        app.events.unsubscribe(listener)
    monkeypatch.setattr("conveyor.producer.BeforePublish", forbidden)
    monkeypatch.setattr("conveyor.producer.TaskSent", forbidden)
    task = app.task(name="proj.noop")(lambda x: None)
    task.delay(1)
    task.delay_many([(1,), (2,)])
    assert len(_bodies(app, "celery")) == 3


# --- each door, announced once with its kind ----------------------------------------------


def test_bulk_group_and_chord_doors(app: Conveyor, tape: Tape) -> None:
    add = app.task(name="proj.add")(lambda x, y: x + y)
    tsum = app.task(name="proj.tsum")(lambda values: sum(values))
    many = add.delay_many([(1, 1), (2, 2)])
    assert [(e.uuid, e.kind) for e in tape.sent()] == [(r.id, "bulk") for r in many]
    tape.calls.clear()
    grouped = group(add.s(1, 1), add.s(2, 2)).apply_async()
    assert [(e.uuid, e.kind, e.group_id) for e in tape.sent()] == [
        (r.id, "workflow", grouped.id) for r in grouped.results
    ]
    tape.calls.clear()
    result = chord([add.s(1, 1), add.s(2, 2)], tsum.s()).apply_async()
    sent = tape.sent()
    joins = [e for e in sent if e.name == "conveyor.chord_join"]
    assert len(joins) == 1  # the join message: announced once, when the chord is sent
    assert joins[0].kind == "workflow"
    assert result.parent is not None
    header_ids = [r.id for r in result.parent.results]
    assert sorted(e.uuid for e in sent if e.name == "proj.add") == sorted(header_ids)


def test_retry_sends_the_next_attempt_through_the_producer(app: Conveyor, tape: Tape) -> None:
    flaky = app.task(name="proj.flaky", bind=True)(lambda self: None)
    request = Context(
        id="retry-me",
        task="proj.flaky",
        args=[1],
        retries=0,
        called_directly=False,
        delivery_info={"queue": "came-from", "priority": 0},
        headers={"mine": 1},
    )
    push_request(request)
    try:
        with pytest.raises(Retry):
            flaky.retry(countdown=30)
    finally:
        pop_request()
    (event,) = tape.sent()
    assert (event.uuid, event.kind, event.retries, event.queue) == (
        "retry-me",
        "retry",
        1,
        "came-from",
    )
    assert event.eta is not None and event.eta >= event.timestamp + 29
    assert request.headers == {"mine": 1}  # the hook's header went on the copy only
    assert event.headers == {"mine": 1, "traceparent": "00-retry-me"}


def test_a_duplicate_idempotent_send_is_not_announced(app: Conveyor, tape: Tape) -> None:
    task = app.task(name="proj.once")(lambda x: x)
    first = task.apply_async((1,), idempotency_key="k")
    second = task.apply_async((1,), idempotency_key="k")
    assert second.id == first.id
    assert [e.uuid for e in tape.sent()] == [first.id]


def test_replay_sends_the_stored_bytes_and_announces_what_decodes(
    app: Conveyor, tape: Tape
) -> None:
    good = Envelope(id="replayed", task="proj.add", args=[1, 2])
    body = encode_envelope(good)
    app.coordinator.dead_letter(body, "celery", "parked")
    app.coordinator.dead_letter(b"\x00not a message", "celery", "garbage")
    assert app.producer.replay() == 2
    assert app.coordinator.dead_letters() == []
    consumer = app.broker.consumer(["celery"], "c", 10.0)
    try:
        bodies = sorted(d.body for d in consumer.fetch(10, 0.2))
    finally:
        consumer.close()
    assert bodies == sorted([body, b"\x00not a message"])  # byte for byte
    assert [(e.uuid, e.kind) for e in tape.sent()] == [("replayed", "replay")]
    assert not any(name == "before" for name, _ in tape.calls)


# --- Celery's publish signals are listeners --------------------------------------------------


def test_celerys_publish_signals_get_celerys_arguments_and_may_add_headers(
    app: Conveyor,
) -> None:
    seen: dict[str, Any] = {}

    def before(sender: str, headers: dict[str, Any], routing_key: str, **extra: Any) -> None:
        seen["before"] = (sender, headers["id"], headers["task"], routing_key, extra["body"])
        headers["tenant"] = "acme"

    def after(sender: str, headers: dict[str, Any], routing_key: str, **_: Any) -> None:
        seen["after"] = (sender, headers["id"], headers.get("tenant"), routing_key)

    before_task_publish.connect(before)
    after_task_publish.connect(after)
    try:
        result = app.task(name="proj.add")(lambda x, y: x + y).apply_async((1, 2), queue="q")
    finally:
        before_task_publish.disconnect(before)
        after_task_publish.disconnect(after)
    embed = {"callbacks": None, "errbacks": None, "chord": None}
    assert seen["before"] == ("proj.add", result.id, "proj.add", "q", ([1, 2], {}, embed))
    assert seen["after"] == ("proj.add", result.id, "acme", "q")
    (message,) = _bodies(app, "q")
    assert message.headers == {"tenant": "acme"}  # protocol keys stay in their own fields
