"""Signatures and workflows as data (issue 5): building, partial application, JSON round
trips, how a chain is laid out in messages; and workflows run eagerly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor import Conveyor, GroupResult, Signature, chain, chord, group, signature, states
from conveyor.canvas import chunks
from conveyor.exceptions import ChordError
from conveyor.message import decode_envelope
from conveyor.worker.workflow import downstream, first_ids

app = Conveyor("canvas_unit", broker="memory://canvas-unit", set_as_current=False)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task
def boom(x: Any) -> None:
    raise ValueError(f"boom {x}")


@app.task
def collect(value: Any, into: str) -> Any:
    SEEN.setdefault(into, []).append(value)
    return value


SEEN: dict[str, list[Any]] = {}


def roundtrip(sig: Signature[Any]) -> Signature[Any]:
    return Signature.from_dict(json.loads(json.dumps(sig.to_dict())), app)


@pytest.fixture
def eager() -> Iterator[None]:
    app.conf.task_always_eager = True
    SEEN.clear()
    try:
        yield
    finally:
        app.conf.task_always_eager = False


# building ------------------------------------------------------------------------------
def test_s_and_si() -> None:
    sig = add.s(2)
    assert (sig.task, sig.args, sig.kwargs, sig.immutable) == (add.name, (2,), {}, False)
    assert sig.type is add and sig.app is app
    assert add.si(1, 2).immutable
    assert repr(add.si(1, y=2)) == f"%{add.name}(1, y=2)"


def test_partial_application_prepends_unless_immutable() -> None:
    assert add.s(2).clone((1,)).args == (1, 2)
    assert add.s(y=2).clone((1,), {"z": 3}).kwargs == {"y": 2, "z": 3}
    assert add.si(5, 6).clone((1,), {"z": 3}).args == (5, 6)
    assert add.si(5, 6).clone((1,), {"z": 3}).kwargs == {}
    assert add.s(2)(1) == 3  # calling a signature runs the task here, partially applied


def test_set_clone_and_options() -> None:
    sig = add.s(1, 1).set(queue="q1", countdown=5, priority=3)
    assert sig.options == {"queue": "q1", "countdown": 5, "priority": 3}
    copy = sig.clone(queue="q2")
    assert copy.options["queue"] == "q2" and sig.options["queue"] == "q1"
    assert copy == add.s(1, 1).set(queue="q2", countdown=5, priority=3)
    assert sig.set(immutable=True).immutable


def test_signature_from_a_name_needs_no_import_of_the_task() -> None:
    sig = signature("elsewhere.task", args=(1,), kwargs={"a": 2}, countdown=3, app=app)
    assert (sig.task, sig.args, sig.kwargs, sig.options) == (
        "elsewhere.task", (1,), {"a": 2}, {"countdown": 3}
    )  # fmt: skip
    assert signature(sig) == sig and signature(sig) is not sig
    assert signature(sig.to_dict(), app=app) == sig
    assert add.signature((1, 2), queue="x").options == {"queue": "x"}


def test_link_link_error_and_on_error_keep_json() -> None:
    sig = add.s(1, 2)
    callback = sig.link(tsum.s())
    assert callback == tsum.s()
    assert sig.on_error(boom.s()) is sig
    assert sig.options["link"] == [tsum.s().to_dict()]
    assert sig.options["link_error"] == [boom.s().to_dict()]
    assert roundtrip(sig) == sig


def test_freeze_chooses_the_id_once() -> None:
    sig = add.s(1, 2)
    result = sig.freeze()
    assert sig.id == result.id and sig.freeze().id == result.id
    assert add.s(1, 2).freeze("fixed").id == "fixed"


# JSON ------------------------------------------------------------------------------------
def test_every_kind_of_workflow_survives_a_json_round_trip() -> None:
    shapes: list[Signature[Any]] = [
        add.s(1, 2).set(eta=datetime(2030, 1, 1, tzinfo=UTC), queue="q"),
        add.si(1, 2),
        chain(add.s(1, 2), add.s(3), add.s(4)).on_error(boom.s()),
        group(add.s(i, i) for i in range(3)),
        chord([add.s(1, 1), chain(add.s(2, 2), add.s(1))], tsum.s()),
        chord(group(add.s(1, 1)), chain(tsum.s(), add.s(1))),
        add.chunks([(1, 2), (3, 4), (5, 6)], 2),
        add.map([1, 2]),
        add.starmap([(1, 2)]),
    ]
    for sig in shapes:
        back = roundtrip(sig)
        assert type(back) is type(sig)
        assert back == sig, sig
        assert back.to_dict() == sig.to_dict()
    assert roundtrip(shapes[0]).options["eta"] == datetime(2030, 1, 1, tzinfo=UTC)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    args=st.lists(json_values, max_size=4),
    kwargs=st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=3),
    immutable=st.booleans(),
    queue=st.none() | st.text(min_size=1, max_size=8),
)
def test_any_signature_round_trips_through_json(
    args: list[Any], kwargs: dict[str, Any], immutable: bool, queue: str | None
) -> None:
    sig = Signature(add, args, kwargs, immutable=immutable)
    if queue is not None:
        sig.set(queue=queue)
    nested = chain(sig, group(sig, sig.clone()), chord([sig], sig))
    assert roundtrip(sig) == sig
    assert roundtrip(nested) == nested


# how workflows are laid out ----------------------------------------------------------
def test_the_pipe_builds_one_flat_chain() -> None:
    flow = add.s(1, 1) | add.s(2) | add.s(3)
    assert isinstance(flow, chain)
    assert [t.args for t in flow.tasks] == [(1, 1), (2,), (3,)]
    assert len((flow | (add.s(4) | add.s(5))).tasks) == 5


def test_a_group_followed_by_a_step_becomes_a_chord() -> None:
    flow = chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(), add.s(10))
    steps = flow._steps()
    assert [type(s).__name__ for s in steps] == ["Signature", "chord", "Signature"]
    assert steps[1].body == tsum.s()  # type: ignore[attr-defined]


def test_a_frozen_chain_knows_every_id_and_its_parents() -> None:
    flow = chain(add.s(1, 1), add.s(2), add.s(3))
    last = flow.freeze()
    ids = [t.id for t in flow.tasks]
    assert last.id == ids[2]
    assert last.parent is not None and last.parent.id == ids[1]
    assert last.parent.parent is not None and last.parent.parent.id == ids[0]
    continuation = chain(*flow.tasks[1:]).to_dict()
    assert [i for i, _, _ in downstream(continuation)] == ids[1:]
    assert first_ids(continuation) == ids[1:2]


def test_a_chain_is_sent_as_its_first_task_carrying_the_rest() -> None:
    app.close()
    result = chain(add.s(1, 1), add.s(2), add.s(3).on_error(boom.si(0))).apply_async()
    consumer = app.broker.consumer([app.conf.task_default_queue], "c", 10.0)
    try:
        (delivery,) = consumer.fetch(10, 1.0)
    finally:
        consumer.close()
        app.close()
    envelope = decode_envelope(delivery.body, frozenset({"json"}))
    assert envelope.task == add.name and envelope.args == [1, 1]
    assert envelope.root_id == envelope.id
    (rest,) = envelope.callbacks or []
    assert rest["subtask_type"] == "chain"  # the rest of the chain, flat
    assert [t["args"] for t in rest["kwargs"]["tasks"]] == [[2], [3]]
    assert rest["kwargs"]["tasks"][-1]["options"]["task_id"] == result.id
    assert result.parent is not None and result.parent.parent is not None
    assert result.parent.parent.id == envelope.id


def test_chunks_split_the_calls() -> None:
    parts = add.chunks([(i, i) for i in range(7)], 3)
    assert isinstance(parts, chunks)
    assert [len(s.args[1]) for s in parts.group().tasks] == [3, 3, 1]
    with pytest.raises(ValueError):
        add.chunks([], 0)


# eager -----------------------------------------------------------------------------------
@pytest.mark.usefixtures("eager")
def test_eager_chain_group_and_chord() -> None:
    assert chain(add.s(1, 2), add.s(10), add.si(5, 5))().get() == 10
    assert (add.s(1, 1) | add.s(1)).delay().get() == 3
    result = group(add.s(i, i) for i in range(4))()
    assert isinstance(result, GroupResult)
    assert result.get() == [0, 2, 4, 6]
    assert result.ready() and result.successful() and result.completed_count() == 4
    assert chord(add.s(i, i) for i in range(4))(tsum.s()).get() == 12
    assert chord([add.s(1, 1)], tsum.s())().get() == 2
    assert chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s())().get() == 7
    assert tsum.map([[1, 2], [3]]).apply().get() == [3, 3]
    assert add.starmap([(1, 2), (3, 4)]).delay().get() == [3, 7]
    assert add.chunks([(1, 1), (2, 2), (3, 3)], 2)().get() == [[2, 4], [6]]


@pytest.mark.usefixtures("eager")
def test_eager_errors() -> None:
    result = chain(add.s(1, 1), boom.s(), add.s(1))()
    assert result.state == states.FAILURE
    with pytest.raises(ValueError, match="boom 2"):
        result.get()
    with pytest.raises(ChordError, match=r"boom\[") as info:
        chord([add.s(1, 1), boom.s(1)], tsum.s())().get()
    assert "ValueError(boom 1)" in str(info.value)
    failed = group(add.s(1, 1), boom.s(3))()
    assert failed.failed() and not failed.successful() and failed.completed_count() == 1
    values = failed.get(propagate=False)
    assert values[0] == 2 and isinstance(values[1], ValueError)


@pytest.mark.usefixtures("eager")
def test_eager_link_and_link_error() -> None:
    add.apply_async((1, 2), link=collect.s(into="ok"))
    boom.apply_async((1,), link_error=collect.s(into="err"))
    assert SEEN["ok"] == [3]
    assert len(SEEN["err"]) == 1 and isinstance(SEEN["err"][0], str)
