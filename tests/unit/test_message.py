from __future__ import annotations

import datetime
import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.exceptions import ContentDisallowed, MessageError
from conveyor.message import (
    Envelope,
    decode_envelope,
    encode_envelope,
    encode_envelopes,
    has_non_finite,
)

JSON_ONLY = frozenset({"json"})


def test_json_round_trip_is_plain_readable_json() -> None:
    envelope = Envelope(id="1", task="t.add", args=[1, "two"], kwargs={"x": [3]})
    body = encode_envelope(envelope)
    assert json.loads(body)["task"] == "t.add"
    assert decode_envelope(body, JSON_ONLY) == envelope


def test_msgpack_round_trip_needs_to_be_accepted() -> None:
    envelope = Envelope(id="1", task="t", args=[b"bytes", 1.5])
    body = encode_envelope(envelope, "msgpack")
    assert decode_envelope(body, frozenset({"msgpack"})) == envelope
    with pytest.raises(ContentDisallowed, match="msgpack"):
        decode_envelope(body, JSON_ONLY)


def test_pickle_is_refused_unless_opted_in() -> None:
    envelope = Envelope(id="1", task="t", args=[{1, 2}])
    body = encode_envelope(envelope, "pickle")
    with pytest.raises(ContentDisallowed, match="pickle"):
        decode_envelope(body, JSON_ONLY)
    assert decode_envelope(body, frozenset({"pickle"})).args == [{1, 2}]


class OrmRow:
    pass


def test_unserializable_argument_is_named() -> None:
    envelope = Envelope(id="1", task="shop.charge", args=[1, OrmRow()])
    with pytest.raises(TypeError, match=r"positional argument 1 \(OrmRow\)"):
        encode_envelope(envelope)
    envelope = Envelope(id="1", task="shop.charge", kwargs={"user": OrmRow()})
    with pytest.raises(TypeError, match="keyword argument 'user'"):
        encode_envelope(envelope)


def test_non_finite_floats_are_refused_not_turned_into_null() -> None:
    with pytest.raises(TypeError, match="positional argument 0"):
        encode_envelope(Envelope(id="1", task="t", args=[float("inf")]))
    assert decode_envelope(
        encode_envelope(Envelope(id="1", task="t", args=[None])), JSON_ONLY
    ).args == [None]


def test_datetimes_travel_as_iso_strings() -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    body = encode_envelope(Envelope(id="1", task="t", args=[when]))
    assert decode_envelope(body, JSON_ONLY).args == ["2026-01-02T03:04:05Z"]


def test_invalid_envelopes_say_why() -> None:
    with pytest.raises(MessageError, match="invalid envelope"):
        decode_envelope(b'{"id": 1, "task": "t"}', JSON_ONLY)
    with pytest.raises(MessageError, match="invalid envelope"):
        decode_envelope(b'{"task": "t"}', JSON_ONLY)
    with pytest.raises(MessageError, match="undecodable"):
        decode_envelope(b"{not json", JSON_ONLY)
    with pytest.raises(MessageError, match="newer"):
        decode_envelope(b'{"v": 99, "id": "1", "task": "t"}', JSON_ONLY)
    with pytest.raises(MessageError, match="empty"):
        decode_envelope(b"", JSON_ONLY)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = b'{"id": "1", "task": "t", "added_in_v1_5": true}'
    assert decode_envelope(body, JSON_ONLY).id == "1"


ALL = frozenset({"json", "msgpack", "pickle"})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    """Every input either decodes to an envelope or raises one of our two errors."""
    try:
        envelope = decode_envelope(data, JSON_ONLY | {"msgpack"})
    except (MessageError, ContentDisallowed):
        return
    assert isinstance(envelope, Envelope)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_random_json_documents_are_accounted_for(document: object) -> None:
    data = json.dumps(document).encode()
    try:
        envelope = decode_envelope(data, JSON_ONLY)
    except MessageError:
        return
    assert isinstance(envelope, Envelope)


@settings(max_examples=200, deadline=None)
@given(
    args=st.lists(json_values, max_size=5),
    kwargs=st.dictionaries(st.text(min_size=1), json_values, max_size=5),
    serializer=st.sampled_from(["json", "msgpack"]),
)
def test_round_trip_property(
    args: list[object], kwargs: dict[str, object], serializer: str
) -> None:
    """Either the call travels unchanged, or it is refused at send time naming the
    argument (inf/nan in JSON, integers beyond 64 bits in msgpack): never altered."""
    envelope = Envelope(id="x", task="t", args=args, kwargs=kwargs)
    try:
        body = encode_envelope(envelope, serializer)
    except TypeError as exc:
        assert "argument" in str(exc)
        assert has_non_finite([args, kwargs]) or (
            serializer == "msgpack" and _huge_int([args, kwargs])
        )
        return
    assert decode_envelope(body, ALL) == envelope


def _huge_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**64
    if isinstance(value, (list, tuple)):
        return any(_huge_int(v) for v in value)
    if isinstance(value, dict):
        return any(_huge_int(v) for v in value.values())
    return False


def test_pickle_payload_inside_a_json_accepting_worker_is_not_unpickled() -> None:
    evil = b"\x00pickle\x00" + pickle.dumps({"id": "1", "task": "t"})
    with pytest.raises(ContentDisallowed):
        decode_envelope(evil, JSON_ONLY)


call_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # inf and nan too: refused, as one by one
    | st.text()
    | st.binary(max_size=8),  # tagged, as one by one
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.lists(call_values, max_size=3),
            st.dictionaries(st.text(min_size=1, max_size=3), call_values, max_size=2),
            st.sampled_from([None, [{"task": "t", "args": [b"\x00"]}]]),
        ),
        min_size=1,
        max_size=4,
    ),
    serializer=st.sampled_from(["json", "msgpack"]),
    limit=st.sampled_from([None, 200]),
)
def test_encoding_in_bulk_is_encoding_each(
    calls: list[tuple[list[object], dict[str, object], list[dict[str, object]] | None]],
    serializer: str,
    limit: int | None,
) -> None:
    """The bulk encoder's shortcut for plain JSON never changes a message or an error:
    each body is the one encode_envelope makes, and the same call fails the same way."""
    envelopes = [
        Envelope(id=f"id-{i}", task="t", args=args, kwargs=kwargs, callbacks=links)
        for i, (args, kwargs, links) in enumerate(calls)
    ]
    try:
        expected: list[bytes] | str = [encode_envelope(e, serializer, limit) for e in envelopes]
    except (TypeError, ValueError) as exc:
        expected = f"{type(exc).__name__}: {exc}"
    try:
        got: list[bytes] | str = encode_envelopes(envelopes, serializer, limit)
    except (TypeError, ValueError) as exc:
        got = f"{type(exc).__name__}: {exc}"
    assert got == expected
