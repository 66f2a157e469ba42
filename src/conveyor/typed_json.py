"""Values JSON has no type for, carried with a type marker (as kombu's JSON does).

msgspec writes ``bytes`` as a bare base64 string, so a task given ``b"\\x00\\x01"`` would
receive ``"AAE="``: the type lost without an error.
Celery's JSON wraps such values as ``{"__type__": "bytes", "__value__": ...}`` and
unwraps them on the other side; conveyor does the same for bytes, bytearray and
memoryview, in task arguments, workflow callbacks and results.

Both directions cost nothing when there is nothing to do: :func:`tag` returns its
argument itself unless it holds bytes, and readers call :func:`untag` only when the
raw document contains the marker (one ``in`` test on the bytes).
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["MARKER", "holds_binary", "tag", "untag"]

# What a reader looks for in the raw JSON before it walks the decoded values.
MARKER = b'"__type__"'
_BINARY = (bytes, bytearray, memoryview)
_ATOMS = frozenset({int, str, float, bool, type(None)})


def holds_binary(value: Any) -> bool:
    """Is there a bytes-like object anywhere in ``value`` (lists, tuples, dict values)?
    The check every JSON message pays (~0.3 us for a few plain arguments)."""
    kind = type(value)
    items: Any
    if kind is list or kind is tuple:
        items = value
    elif kind is dict:
        items = value.values()
    else:
        return isinstance(value, _BINARY)
    if _ATOMS.issuperset(map(type, items)):  # in C: the usual case, plain values
        return False
    return any(holds_binary(item) for item in items)


def tag(value: Any) -> Any:
    """``value`` with every bytes-like object inside it replaced by its marker dict;
    ``value`` itself (not a copy) when it holds none."""
    if not holds_binary(value):
        return value
    return _tag(value)


def _tag(value: Any) -> Any:
    if isinstance(value, _BINARY):
        return {"__type__": "bytes", "__value__": base64.b64encode(value).decode("ascii")}
    if type(value) in (list, tuple):
        return [_tag(item) for item in value]
    if type(value) is dict:
        return {key: _tag(item) for key, item in value.items()}
    return value


def untag(value: Any) -> Any:
    """The inverse of :func:`tag`: marker dicts back to ``bytes``, in place."""
    if type(value) is list:
        for index, item in enumerate(value):
            value[index] = untag(item)
        return value
    if type(value) is dict:
        if len(value) == 2 and value.get("__type__") == "bytes" and "__value__" in value:
            return base64.b64decode(value["__value__"])
        for key, item in value.items():
            value[key] = untag(item)
        return value
    return value
