"""The envelope: what travels from ``.delay()`` to a worker, versioned and validated.

A message is the envelope serialized (JSON by default) and framed by
:mod:`conveyor.serializers`. The broker never looks inside it; the worker decodes it
with a typed decoder, so a message that is not an envelope is refused with a reason
(and dead-lettered) instead of failing somewhere deep in the executor.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import msgspec

from .exceptions import ContentDisallowed, MessageError
from .serializers import frame, get_serializer, unframe
from .typed_json import MARKER, holds_binary, tag, untag

__all__ = ["ENVELOPE_VERSION", "Envelope", "decode_envelope", "encode_envelope"]

ENVELOPE_VERSION = 1


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One task call. Unknown fields are ignored, so newer senders stay readable."""

    v: int = ENVELOPE_VERSION
    id: str
    task: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    eta: float | None = None
    expires: float | None = None
    retries: int = 0
    priority: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None
    ignore_result: bool = False
    time_limit: float | None = None
    soft_time_limit: float | None = None
    sent_at: float = 0.0
    headers: dict[str, Any] = msgspec.field(default_factory=dict)
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None


_json_decoder = msgspec.json.Decoder(Envelope)
_JSON_DUMPS = get_serializer("json").dumps
_msgpack_decoder = msgspec.msgpack.Decoder(Envelope)
_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def encode_envelope(envelope: Envelope, serializer: str = "json") -> bytes:
    """Serialize and frame. Raises ``TypeError`` naming the argument that cannot go."""
    try:
        if serializer == "json":
            body = _json_encoder.encode(_tagged(envelope))
            # JSON has no inf/nan and msgspec writes them as null: refuse rather than
            # change a value. Only bodies holding a null need the (slower) look.
            if b"null" in body and has_non_finite([envelope.args, envelope.kwargs]):
                raise TypeError("inf and nan cannot travel as JSON")
            return body
        if serializer == "msgpack":
            return frame("msgpack", _msgpack_encoder.encode(envelope))
        if serializer == "pickle":
            payload = pickle.dumps(msgspec.structs.asdict(envelope), pickle.HIGHEST_PROTOCOL)
            return frame("pickle", payload)
    except (
        TypeError,
        OverflowError,
        msgspec.EncodeError,
        pickle.PicklingError,
        AttributeError,
    ) as exc:
        raise TypeError(_explain(envelope, serializer, exc)) from None
    get_serializer(serializer)  # raises with the list of known names
    raise AssertionError("unreachable")


def decode_envelope(data: bytes, accept: frozenset[str]) -> Envelope:
    """Decode a wire message into an envelope, or raise with the reason."""
    name, payload = unframe(data)
    if name not in accept:
        raise ContentDisallowed(
            f"content type {name!r} is not in accept_content ({', '.join(sorted(accept))})"
        )
    try:
        if name == "json":
            envelope = _json_decoder.decode(payload)
            if MARKER in payload:
                _untag(envelope)
        elif name == "msgpack":
            envelope = _msgpack_decoder.decode(payload)
        elif name == "pickle":
            envelope = msgspec.convert(pickle.loads(payload), Envelope)
        else:
            raise MessageError(f"unknown content type {name!r}")
    except msgspec.ValidationError as exc:
        raise MessageError(f"invalid envelope: {exc}") from None
    except (msgspec.DecodeError, pickle.UnpicklingError, ValueError, EOFError) as exc:
        raise MessageError(f"undecodable {name} message: {exc}") from None
    if envelope.v > ENVELOPE_VERSION:
        raise MessageError(f"envelope version {envelope.v} is newer than this worker understands")
    return envelope


def _tagged(envelope: Envelope) -> Envelope:
    """The envelope with bytes in its arguments and callbacks type-marked for JSON
    (typed_json.py); the envelope itself when it holds none (the usual case)."""
    if not (
        holds_binary(envelope.args)
        or holds_binary(envelope.kwargs)
        or (envelope.callbacks is not None and holds_binary(envelope.callbacks))
        or (envelope.errbacks is not None and holds_binary(envelope.errbacks))
    ):
        return envelope
    return msgspec.structs.replace(
        envelope,
        args=tag(envelope.args),
        kwargs=tag(envelope.kwargs),
        callbacks=tag(envelope.callbacks),
        errbacks=tag(envelope.errbacks),
    )


def _untag(envelope: Envelope) -> None:
    untag(envelope.args)
    untag(envelope.kwargs)
    untag(envelope.callbacks)
    untag(envelope.errbacks)


def _explain(envelope: Envelope, serializer: str, exc: BaseException) -> str:
    """Find the argument that cannot be serialized, so the error can name it."""
    encode = get_serializer(serializer).dumps
    culprit = "an option or header"
    for position, value in enumerate(envelope.args):
        if not _encodes(encode, value):
            culprit = f"positional argument {position} ({type(value).__name__})"
            break
    else:
        for key, value in envelope.kwargs.items():
            if not _encodes(encode, value):
                culprit = f"keyword argument {key!r} ({type(value).__name__})"
                break
    return (
        f"task {envelope.task!r}: {culprit} cannot be serialized with {serializer!r} ({exc}). "
        "Pass plain data such as ids, not live objects like ORM rows or open files."
    )


def _encodes(encode: Any, value: Any) -> bool:
    try:
        encode(value)
    except Exception:
        return False
    return not (encode is _JSON_DUMPS and has_non_finite(value))


def has_non_finite(value: Any) -> bool:
    """True when ``value`` holds an inf or nan float (at any depth of lists and dicts)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    return False
