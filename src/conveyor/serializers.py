"""Serializers: how task arguments and results become bytes.

JSON (msgspec) is the default and the only content accepted unless the user lists
more in ``accept_content``. msgpack is an option; pickle is refused unless opted in,
because decoding a pickle runs code chosen by whoever wrote the message.

On the wire a JSON payload is the bare document (readable in ``redis-cli``); any other
content type is framed as ``\\x00<name>\\x00<payload>`` so a reader knows what it holds
before decoding it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from .exceptions import ContentDisallowed, MessageError

__all__ = ["Serializer", "accepted", "frame", "get_serializer", "unframe"]


@dataclass(frozen=True, slots=True)
class Serializer:
    name: str
    content_type: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _pickle_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()

_SERIALIZERS: dict[str, Serializer] = {
    "json": Serializer("json", "application/json", _json_encoder.encode, msgspec.json.decode),
    "msgpack": Serializer(
        "msgpack", "application/x-msgpack", _msgpack_encoder.encode, msgspec.msgpack.decode
    ),
    "pickle": Serializer("pickle", "application/x-python-serialize", _pickle_dumps, pickle.loads),
}

# Celery users write content types or short names in accept_content; both are fine.
_ALIASES = {s.content_type: s.name for s in _SERIALIZERS.values()} | {
    "application/x-python-serialize": "pickle",
    "msgpack": "msgpack",
}


def get_serializer(name: str) -> Serializer:
    key = _ALIASES.get(name, name)
    try:
        return _SERIALIZERS[key]
    except KeyError:
        known = ", ".join(sorted(_SERIALIZERS))
        raise ContentDisallowed(f"unknown serializer {name!r}; expected one of: {known}") from None


def accepted(names: Iterable[str]) -> frozenset[str]:
    """Normalise an ``accept_content`` list to serializer names."""
    return frozenset(_ALIASES.get(n, n) for n in names)


def frame(serializer: str, payload: bytes) -> bytes:
    if serializer == "json":
        return payload
    return b"\x00" + serializer.encode() + b"\x00" + payload


def unframe(data: bytes) -> tuple[str, bytes]:
    """Split a wire message into (serializer name, payload)."""
    if not data:
        raise MessageError("empty message")
    if data[0] != 0:
        return "json", data
    end = data.find(b"\x00", 1)
    if end < 0 or end > 32:
        raise MessageError("malformed content-type frame")
    return data[1:end].decode("ascii", "replace"), data[end + 1 :]
