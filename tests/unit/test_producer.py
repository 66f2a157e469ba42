"""The producer (conveyor/producer.py): one routing rule, hooks around every send in
order, a hook's error isolated, and each door announcing what it sent once."""

from __future__ import annotations

import gc
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from conveyor import Conveyor, chord, group
from conveyor.events import BeforePublish, TaskSent
from conveyor.exceptions import Retry
from conveyor.ids import new_task_id, new_task_ids
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


# --- the fast doors (issue 17): delay and delay_many send what apply_async sends --------


def _without_send_facts(envelope: Envelope) -> dict[str, Any]:
    fields = msgspec.structs.asdict(envelope)
    for name in ("id", "root_id", "sent_at", "headers"):  # the tape's header holds the id
        fields.pop(name)
    return fields


def test_delay_sends_what_apply_async_sends(app: Conveyor, tape: Tape) -> None:
    add = app.task(name="proj.add", priority=4, soft_time_limit=1)(lambda x, y=0: x + y)
    one = add.delay(1, y=2)
    two = add.apply_async((1,), {"y": 2})
    first, second = sorted(_bodies(app, "celery"), key=lambda e: e.id != one.id)
    assert (first.id, first.root_id, second.id) == (one.id, one.id, two.id)
    assert _without_send_facts(first) == _without_send_facts(second)
    assert first.headers == {"traceparent": f"00-{one.id}"}  # the hook ran on both
    assert [(e.uuid, e.kind) for e in tape.sent()] == [(one.id, "call"), (two.id, "call")]
    with pytest.raises(TypeError, match=r"proj\.add"):
        add.delay()  # the arguments are checked as apply_async checks them


def test_delay_goes_through_an_apply_async_of_its_own(app: Conveyor) -> None:
    seen: list[tuple[Any, ...]] = []

    class Audited(app.Task):  # type: ignore[name-defined,misc]
        def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
            seen.append(("class", tuple(args or ()), kwargs))
            return super().apply_async(args, kwargs, **options)

    audited = app.task(name="proj.audited", base=Audited)(lambda x: x)
    audited.delay(1)
    plain = app.task(name="proj.plain")(lambda x: x)
    original = plain.apply_async
    plain.apply_async = lambda args=None, kwargs=None, **o: (  # type: ignore[method-assign]
        seen.append(("instance", tuple(args or ()), kwargs)) or original(args, kwargs, **o)
    )
    plain.delay(2)
    assert seen == [("class", (1,), {}), ("instance", (2,), {})]
    assert len(_bodies(app, "celery")) == 2


def test_delay_many_builds_what_delay_builds_inside_a_task(app: Conveyor) -> None:
    add = app.task(name="proj.add", priority=2)(lambda x, y: x + y)
    parent = Context(id="parent-id", root_id="root-id", task="proj.outer")
    push_request(parent)
    try:
        single = add.delay(1, 1)
        many = add.delay_many([(2, 2), (3, 3)])
    finally:
        pop_request()
    sent = {e.id: e for e in _bodies(app, "celery")}
    assert parent.children == [single.id, *(r.id for r in many)]
    for result in many:
        envelope = sent[result.id]
        assert (envelope.root_id, envelope.parent_id, envelope.priority) == (
            "root-id",
            "parent-id",
            2,
        )
        reference = _without_send_facts(sent[single.id])
        assert _without_send_facts(envelope) == {**reference, "args": envelope.args}


def test_delay_many_checks_every_call_before_sending_any(app: Conveyor) -> None:
    add = app.task(name="proj.add")(lambda x, y: x + y)
    with pytest.raises(TypeError, match=r"proj\.add"):
        add.delay_many([(1, 1), (1,)])
    with pytest.raises(TypeError, match="positional argument 0"):
        add.delay_many([(1, 1), (object(), 1)])
    assert _bodies(app, "celery") == []


@pytest.mark.parametrize("enabled", [True, False])
def test_delay_many_leaves_the_garbage_collector_as_it_found_it(
    app: Conveyor, enabled: bool
) -> None:
    add = app.task(name="proj.add")(lambda x, y: x + y)
    during: list[bool] = []

    class Look:
        def on_before_publish(self, event: BeforePublish) -> None:
            during.append(gc.isenabled())

    app.events.subscribe(Look())
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        add.delay_many([(1, 1), (2, 2)])
        assert gc.isenabled() is enabled
        with pytest.raises(TypeError):
            add.delay_many([(1,)])
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert during == [False, False]  # paused while the messages were built


def test_task_ids_made_in_bulk_are_uuid4_strings_and_a_forked_child_makes_its_own() -> None:
    ids = new_task_ids(500) + [new_task_id() for _ in range(500)]
    assert len(set(ids)) == 1000
    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == task_id
    new_task_id()  # the parent now holds ids made ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id must not be one its parent will hand out
        os.write(write, new_task_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child not in {new_task_id() for _ in range(100)}
