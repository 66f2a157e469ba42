"""bytes keep their type through JSON (issue 10), as with Celery's JSON: in arguments,
in callbacks and in results; other values are untouched, at no cost."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.message import Envelope, decode_envelope, encode_envelope
from conveyor.stores.results import ResultMeta, decode_meta, encode_meta
from conveyor.typed_json import tag, untag

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(deadline=None)  # a timing limit, flaky on a loaded machine; not what is tested
@given(values)
def test_any_value_round_trips_through_an_envelope(value: Any) -> None:
    envelope = Envelope(id="t1", task="t", args=[value], kwargs={"k": value})
    decoded = decode_envelope(encode_envelope(envelope), frozenset({"json"}))
    assert decoded.args == [value] and decoded.kwargs == {"k": value}


@settings(deadline=None)
@given(values)
def test_any_value_round_trips_as_a_result(value: Any) -> None:
    meta = ResultMeta(task_id="t1", status="SUCCESS", result=value)
    assert decode_meta(encode_meta(meta)).result == value


def test_bytes_like_values_arrive_as_bytes() -> None:
    envelope = Envelope(
        id="t1", task="t", args=[bytearray(b"ab"), (memoryview(b"c"),)],
        callbacks=[{"task": "t", "args": [b"\x00"], "kwargs": {}, "options": {}}],
    )  # fmt: skip
    decoded = decode_envelope(encode_envelope(envelope), frozenset({"json"}))
    assert decoded.args == [b"ab", [b"c"]]
    assert decoded.callbacks is not None and decoded.callbacks[0]["args"] == [b"\x00"]


def test_values_without_bytes_are_not_copied() -> None:
    args = [1, "x", [2.5, None], {"a": True}]
    assert tag(args) is args
    marker = {"__type__": "bytes", "__value__": "AAE="}
    assert untag([marker]) == [b"\x00\x01"]
    assert untag({"__type__": "bytes", "__value__": "AA==", "extra": 1})["extra"] == 1
