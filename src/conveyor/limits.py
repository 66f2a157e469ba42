"""The limits and keys a task declares (rate, concurrency, idempotency), read the same
way by senders and workers.

``rate_limit`` (and ``task_default_rate_limit``)
    ``"10/s"``, ``"100/m"``, ``"1000/h"``, or a number of tasks per second, as Celery
    reads it. ``None``, ``0`` and ``"0"`` mean no limit. Held across all workers by the
    broker's limiter (see ``worker/admission.py``).

``concurrency_limit`` and ``concurrency_key``
    At most ``concurrency_limit`` calls of the task run at once, across all workers; with
    ``concurrency_key``, at most that many *per key*. The key is the name of one of the
    task's arguments (``concurrency_key="customer_id"``, given by keyword or position),
    or a callable ``(args, kwargs) -> key``.

``idempotency_key`` and ``idempotency_window``
    ``apply_async(idempotency_key="charge-123")`` makes a second send of the task with
    the same key within the window (``task_idempotency_window``, 1 h) a no-op returning
    the first call's result. On the task, ``idempotency_key`` derives the key of every
    send: an argument name, a callable ``(args, kwargs) -> key``, or ``True`` for all
    of the arguments. Keys are per task: two tasks may use the same key.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .task import Task

__all__ = ["KeySpec", "call_key", "parse_rate"]

# How a task option names a key: an argument name, a callable (args, kwargs) -> key, or
# (idempotency only) True for all of the arguments.
KeySpec = str | Callable[[Sequence[Any], Mapping[str, Any]], Any] | bool | None

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: str | float | None) -> float | None:
    """Tasks per second for a rate limit, or None when there is none."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        rate = float(value)
    else:
        text = value.strip()
        if not text:
            return None
        count, _, unit = text.partition("/")
        try:
            rate = float(count) / _UNITS[unit.strip().lower()[:1] or "s"]
        except (KeyError, ValueError):
            raise ConfigurationError(
                f"bad rate limit {value!r}: expected e.g. '10/s', '100/m' or '1000/h'"
            ) from None
    if rate < 0:
        raise ConfigurationError(f"bad rate limit {value!r}: it cannot be negative")
    return rate or None


def call_key(
    task: Task[..., Any], spec: KeySpec, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> str | None:
    """The key ``spec`` picks for one call of ``task`` (None: the call has no key)."""
    if spec is None or spec is False:
        return None
    if spec is True:
        payload = msgspec.json.encode([list(args), dict(kwargs)], order="sorted")
        return hashlib.sha1(payload).hexdigest()
    if isinstance(spec, str):
        if spec in kwargs:
            return str(kwargs[spec])
        position = _positions(task).get(spec)
        if position is None or position >= len(args):
            raise ConfigurationError(
                f"task {task.name!r}: no argument {spec!r} in this call to take a key from"
            )
        return str(args[position])
    value = spec(args, kwargs)
    return None if value is None else str(value)


def _positions(task: Task[..., Any]) -> dict[str, int]:
    return _parameter_positions(task.__wrapped__, bool(task.bind))


@functools.lru_cache(maxsize=256)
def _parameter_positions(fun: Callable[..., Any], bound: bool) -> dict[str, int]:
    parameters = [
        p.name
        for p in inspect.signature(fun).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if bound:
        parameters = parameters[1:]  # self
    return {name: i for i, name in enumerate(parameters)}
