"""The envelope: what travels from ``.delay()`` to a worker, versioned and validated.

A message is the envelope serialized (JSON by default) and framed by
:mod:`conveyor.serializers`. The broker never looks inside it; the worker decodes it
with a typed decoder, so a message that is not an envelope is refused with a reason
(and dead-lettered) instead of failing somewhere deep in the executor.
"""

from __future__ import annotations

import math
import pickle
import pickletools
from collections.abc import Sequence
from typing import Annotated, Any, NamedTuple

import msgspec

from . import signing
from .exceptions import ContentDisallowed, MessageError
from .serializers import frame, get_serializer, unframe
from .typed_json import MARKER, holds_binary, tag, untag

__all__ = [
    "ENVELOPE_VERSION",
    "Envelope",
    "MessageHead",
    "check_size",
    "decode_envelope",
    "encode_envelope",
    "encode_envelopes",
    "message_head",
]

ENVELOPE_VERSION = 1

# Bounds checked when a message is decoded, so a worker never trusts a field's shape.
# Task ids are used in result keys: 255 is four times a UUID, and then some.
MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 1024
TaskId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
OptionalId = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)] | None
TaskName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)] | None
Priority = Annotated[int, msgspec.Meta(ge=0, le=255)] | None


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One task call. Unknown fields are ignored, so newer senders stay readable."""

    v: Annotated[int, msgspec.Meta(ge=1)] = ENVELOPE_VERSION
    id: TaskId
    task: TaskName
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    eta: float | None = None
    expires: float | None = None
    retries: Count = 0
    priority: Priority = None
    root_id: OptionalId = None
    parent_id: OptionalId = None
    group_id: OptionalId = None
    ignore_result: bool = False
    time_limit: Seconds = None
    soft_time_limit: Seconds = None
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


def encode_envelope(
    envelope: Envelope, serializer: str = "json", max_size: int | None = None
) -> bytes:
    """Serialize and frame. Raises ``TypeError`` naming the argument that cannot go, and
    ``ValueError`` when the message is over ``max_size`` bytes (the send paths pass
    ``broker_max_message_size``, so a message too large fails before anything is sent).

    ``auth`` signs the envelope serialized with ``security_serializer`` (signing.py)."""
    body = _encode(envelope, serializer)
    if max_size:
        check_size(body, max_size, envelope.task)
    return body


def encode_envelopes(
    envelopes: Sequence[Envelope], serializer: str = "json", max_size: int | None = None
) -> list[bytes]:
    """:func:`encode_envelope` of each, in one pass (a bulk send): JSON envelopes that
    hold no bytes and no null (the usual case) skip the per-message function calls."""
    if serializer != "json":
        return [encode_envelope(envelope, serializer, max_size) for envelope in envelopes]
    encode = _json_encoder.encode
    bodies = []
    for envelope in envelopes:
        if (
            envelope.kwargs
            or envelope.callbacks
            or envelope.errbacks
            or holds_binary(envelope.args)
        ):
            body = _encode(envelope, serializer)  # the full path: tags bytes, checks
        else:
            try:
                body = encode(envelope)
            except (TypeError, OverflowError, msgspec.EncodeError):
                body = _encode(envelope, serializer)  # raises, naming the argument
            if b"null" in body and has_non_finite(envelope.args):
                body = _encode(envelope, serializer)  # raises: inf and nan
        if max_size and len(body) > max_size:
            check_size(body, max_size, envelope.task)
        bodies.append(body)
    return bodies


def _encode(envelope: Envelope, serializer: str) -> bytes:
    if serializer == "auth":
        inner = _encode(envelope, signing.inner_serializer())
        return frame("auth", signing.sign(inner))
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
    """Decode a wire message into an envelope, or raise with the reason.

    Every failure is a :class:`MessageError` (or :class:`ContentDisallowed`), whatever
    the bytes: the worker dead-letters the message and goes on (promise 5)."""
    name, payload = unframe(data)
    if name not in accept:
        raise ContentDisallowed(
            f"content type {name!r} is not in accept_content ({', '.join(sorted(accept))})"
        )
    if name == "auth":
        return _decode_signed(payload, accept)
    try:
        envelope = _decode_as(name, payload)
    except MessageError:
        raise
    except RecursionError:
        raise MessageError(f"undecodable {name} message: nested too deeply") from None
    except Exception as exc:  # a pickle's loads may raise anything at all
        raise MessageError(f"undecodable {name} message: {type(exc).__name__}: {exc}") from None
    _check_values(envelope)
    return envelope


def _decode_signed(payload: bytes, accept: frozenset[str]) -> Envelope:
    inner = signing.verify(payload)
    name, _ = unframe(inner)
    if name not in signing.INNER_SERIALIZERS:
        raise MessageError(f"a signed message may not hold {name!r} content")
    return decode_envelope(inner, accept | {name})


def _decode_as(name: str, payload: bytes) -> Envelope:
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
        or (envelope.kwargs and holds_binary(envelope.kwargs))
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


def _check_values(envelope: Envelope) -> None:
    """What the types cannot say: times are finite numbers (msgpack and pickle can
    carry inf and nan; an ETA of nan would never come due)."""
    for field in ("eta", "expires", "sent_at", "time_limit", "soft_time_limit"):
        value = getattr(envelope, field)
        if value is not None and not math.isfinite(value):
            raise MessageError(f"invalid envelope: {field} is {value}")


def check_size(body: bytes, limit: int | None, task: str) -> None:
    """``broker_max_message_size`` at send time: a clear error before anything is sent."""
    if limit and len(body) > limit:
        raise ValueError(
            f"task {task!r}: the message is {len(body):,} bytes, over "
            f"broker_max_message_size ({limit:,}). Store large data elsewhere (a file, "
            "object storage, a database row) and pass its key."
        )


class MessageHead(NamedTuple):
    """The id and task name of a message that will not run, read without trusting it."""

    id: str
    task: str | None


class _LooseHead(msgspec.Struct):
    id: Any = None
    task: Any = None


_loose_json = msgspec.json.Decoder(_LooseHead)
_loose_msgpack = msgspec.msgpack.Decoder(_LooseHead)
_signed_head = msgspec.msgpack.Decoder(signing.SignedMessage)


def message_head(data: bytes) -> MessageHead | None:
    """The id (and task name) of a message that failed to decode, so its REJECTED
    state can be stored: a caller waiting on ``get()`` then hears at once. Never runs
    code (a pickle is scanned with pickletools, not loaded) and never raises."""
    try:
        name, payload = unframe(data)
        if name == "auth":
            return message_head(_signed_head.decode(payload).body)
        if name == "json":
            head = _loose_json.decode(payload)
        elif name == "msgpack":
            head = _loose_msgpack.decode(payload)
        elif name == "pickle":
            head = _pickled_head(payload)
        else:
            return None
    except (Exception, RecursionError):
        return None
    if not isinstance(head.id, str) or not 0 < len(head.id) <= MAX_ID_LENGTH:
        return None
    task = head.task if isinstance(head.task, str) else None
    return MessageHead(head.id, task)


def _pickled_head(payload: bytes) -> _LooseHead:
    """The "id" and "task" strings of a pickled envelope (a dict), from its opcodes."""
    head = _LooseHead()
    wanted: str | None = None
    for index, (_opcode, argument, _position) in enumerate(pickletools.genops(payload)):
        if index > 64:
            break
        if wanted is not None and isinstance(argument, str):
            setattr(head, wanted, argument)
            wanted = None
        elif argument in ("id", "task"):
            wanted = str(argument)
    return head


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
