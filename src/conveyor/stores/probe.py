"""A read-only look at the oldest waiting message of each queue, per store, for the
``conveyor_queue_oldest_message_age_seconds`` gauge (observe/metrics.py).

Redis: ``LINDEX <level> -1`` on each priority list (LPUSH in, RPOP out: the oldest is
at the right end), one pipeline. SQLite: ``min(due)`` of the waiting rows (``due`` is
the publish time, or the ETA of a promoted message). Memory: the head of each level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from .transport import PRIORITY_LEVELS, Transport

__all__ = ["oldest_waiting"]


class _Sent(msgspec.Struct):
    sent_at: float = 0.0
    eta: float | None = None


_decode = msgspec.json.Decoder(_Sent).decode


def _since(body: bytes) -> float | None:
    try:
        sent = _decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not JSON (msgpack, signed): no age rather than a wrong one
    return max(sent.sent_at, sent.eta or 0.0) or None


def oldest_waiting(broker: Transport, queues: Sequence[str]) -> dict[str, float]:
    """Queue name -> when its oldest waiting message became due (epoch seconds); a queue
    with nothing waiting (or whose oldest message cannot be read) is left out."""
    from .memory.transport import MemoryTransport
    from .redis.transport import RedisTransport
    from .sqlite.transport import SQLiteTransport

    if isinstance(broker, RedisTransport):
        return _redis(broker, queues)
    if isinstance(broker, SQLiteTransport):
        rows = broker.db.read(
            "SELECT queue, min(due) FROM messages WHERE owner IS NULL AND scheduled = 0 "
            "GROUP BY queue"
        )
        return {str(q): float(due) for q, due in rows if q in queues and due is not None}
    if isinstance(broker, MemoryTransport):
        return _memory(broker, queues)
    return {}


def _redis(broker: Any, queues: Sequence[str]) -> dict[str, float]:
    pipe = broker.client.pipeline(transaction=False)
    for queue in queues:
        for level in range(PRIORITY_LEVELS):
            pipe.lindex(broker.keys.level(queue, level), -1)
    replies = pipe.execute()
    oldest: dict[str, float] = {}
    for i, queue in enumerate(queues):
        times = [
            t
            for body in replies[i * PRIORITY_LEVELS : (i + 1) * PRIORITY_LEVELS]
            if body is not None and (t := _since(bytes(body))) is not None
        ]
        if times:
            oldest[queue] = min(times)
    return oldest


def _memory(broker: Any, queues: Sequence[str]) -> dict[str, float]:
    oldest: dict[str, float] = {}
    state = broker.state
    with state.cond:
        for queue in queues:
            times = [
                t
                for level in state.queues.get(queue, ())
                if level and (t := _since(level[0].body)) is not None
            ]
            if times:
                oldest[queue] = min(times)
    return oldest
