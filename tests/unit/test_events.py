"""Typed events: the listener check at subscribe, delivery, isolation, the dict form."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.events import (
    EventBus,
    Listener,
    TaskFailed,
    TaskSucceeded,
    WorkerOnline,
    subscribe_everywhere,
)
from conveyor.task import Context
from conveyor.worker.hooks import WorkerHooks


def _succeeded(result: Any = 5) -> TaskSucceeded:
    request = Context(id="t1", task="proj.add", args=[2, 3])
    return TaskSucceeded(
        timestamp=1.0,
        uuid="t1",
        name="proj.add",
        hostname="w1@host",
        request=request,
        result=result,
        runtime=0.25,
    )


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        self.seen.append(event)


# --- the check at subscribe ---------------------------------------------------------


def test_a_misspelt_method_is_an_error_when_it_subscribes() -> None:
    class Typo:
        def on_task_sutcceeded(self, event: TaskSucceeded) -> None: ...

    with pytest.raises(
        TypeError, match=r"Typo.on_task_sutcceeded.*did you mean 'on_task_succeeded'"
    ):
        EventBus().subscribe(Typo())


def test_an_unknown_event_name_lists_the_known_ones() -> None:
    class Unknown:
        def on_lunch(self, event: Any) -> None: ...

    with pytest.raises(TypeError, match=r"no event 'lunch'.*on_task_sent"):
        EventBus().subscribe(Unknown())


def test_a_method_that_does_not_take_one_event_is_an_error() -> None:
    class OldStyle:  # the string-keyed hooks' signature: keyword payloads
        def on_task_succeeded(self, request: Any, result: Any, **_: Any) -> None: ...

    with pytest.raises(TypeError, match="must take one argument, the event"):
        EventBus().subscribe(OldStyle())


def test_a_listener_of_nothing_is_an_error() -> None:
    class Nothing:
        def succeeded(self, event: Any) -> None: ...

    with pytest.raises(TypeError, match="listens to no event"):
        EventBus().subscribe(Nothing())


def test_a_non_callable_handler_is_an_error() -> None:
    class Attribute:
        on_task_failed = 3

    with pytest.raises(TypeError, match="is not callable"):
        EventBus().subscribe(Attribute())


def test_a_listener_subclass_registers_only_what_it_overrides() -> None:
    class Only(Listener):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def on_task_failed(self, event: TaskFailed) -> None:
            self.seen.append(event.uuid)

    bus = EventBus()
    listener = Only()
    bus.subscribe(listener)
    assert len(bus.handlers("on_task_failed")) == 1
    assert bus.handlers("on_task_succeeded") == []  # nothing to build for that event


# --- delivery -------------------------------------------------------------------------


def test_events_reach_each_listener_once_in_order_of_subscription() -> None:
    bus = EventBus()
    first, second = Recorder(), Recorder()
    bus.subscribe(first)
    bus.subscribe(second)
    bus.subscribe(first)  # twice: still once
    event = _succeeded()
    bus.emit(event)
    assert first.seen == [event]
    assert second.seen == [event]
    bus.unsubscribe(first)
    bus.emit(event)
    assert first.seen == [event]
    assert second.seen == [event, event]


def test_a_listener_that_raises_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def on_task_succeeded(self, event: TaskSucceeded) -> None:
            raise RuntimeError("listener bug")

    bus = EventBus()
    after = Recorder()
    bus.subscribe(Broken())
    bus.subscribe(after)
    with caplog.at_level(logging.ERROR, logger="conveyor.events"):
        bus.emit(_succeeded())
    assert len(after.seen) == 1
    assert "listener bug" in caplog.text
    assert "TaskSucceeded" in caplog.text


def test_the_worker_emits_on_its_own_bus_and_the_apps() -> None:
    app = Conveyor("events-test", broker="memory://", set_as_current=False)
    hooks = WorkerHooks(app.events, "w1@host", 2.0)
    on_app, on_worker = Recorder(), Recorder()
    app.events.subscribe(on_app)
    hooks.subscribe(on_worker)
    request = Context(id="t9", task="proj.add", args=[1], kwargs={"y": 2})
    hooks.task_succeeded(request, 3, 0.5)
    assert [e.uuid for e in on_app.seen] == ["t9"]
    assert [e.uuid for e in on_worker.seen] == ["t9"]
    event = on_app.seen[0]
    assert (event.name, event.hostname, event.result, event.runtime) == (
        "proj.add",
        "w1@host",
        3,
        0.5,
    )
    assert event.request is request


def test_standing_listeners_join_every_app_made_before_and_after() -> None:
    class Standing:
        def __init__(self, app: Any) -> None:
            self.app = app

        def on_worker_online(self, event: WorkerOnline) -> None: ...

    before = Conveyor("before", broker="memory://", set_as_current=False)
    subscribe_everywhere(Standing)
    after = Conveyor("after", broker="memory://", set_as_current=False)
    for app in (before, after):
        owners = [type(x) for x in app.events.listeners]
        assert owners.count(Standing) == 1
        listener = next(x for x in app.events.listeners if isinstance(x, Standing))
        assert listener.app is app


# --- the dict form (what an event stream carries) ----------------------------------------


def test_to_dict_has_celerys_type_and_reprs_and_no_live_objects() -> None:
    data = _succeeded(result={"rows": [1, 2]}).to_dict()
    assert data == {
        "type": "task-succeeded",
        "timestamp": 1.0,
        "uuid": "t1",
        "name": "proj.add",
        "hostname": "w1@host",
        "result": "{'rows': [1, 2]}",
        "runtime": 0.25,
    }


def test_to_dict_cuts_long_reprs() -> None:
    data = _succeeded(result="x" * 5000).to_dict()
    assert len(data["result"]) == 1024
    assert data["result"].endswith("...")


def test_failed_event_dict_names_the_exception() -> None:
    event = TaskFailed(
        timestamp=2.0,
        uuid="t2",
        name="proj.boom",
        hostname="w1@host",
        request=Context(id="t2"),
        exception=KeyError("k"),
        traceback="Traceback ...",
        runtime=0.1,
    )
    data = event.to_dict()
    assert data["type"] == "task-failed"
    assert data["exception"] == "KeyError('k')"
    assert data["traceback"] == "Traceback ..."
    assert "request" not in data
