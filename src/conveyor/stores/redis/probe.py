"""The oldest waiting message of each queue on Redis (one Redis or a cluster), for
:class:`~conveyor.stores.probe.WaitingProbe`: ``LINDEX <level> -1`` on each priority
list (LPUSH in, RPOP out: the oldest is at the right end), in one pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..probe import waiting_since
from ..transport import PRIORITY_LEVELS
from .keys import RedisKeys

__all__ = ["oldest_in_lists"]


def oldest_in_lists(client: Any, keys: RedisKeys, queues: Sequence[str]) -> dict[str, float]:
    """``client`` is redis-py's, one Redis or a cluster (whose pipeline sends each
    queue's reads to its shard)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for level in range(PRIORITY_LEVELS):
            pipe.lindex(keys.level(queue, level), -1)
    replies = pipe.execute()
    oldest: dict[str, float] = {}
    for i, queue in enumerate(queues):
        times = [
            t
            for body in replies[i * PRIORITY_LEVELS : (i + 1) * PRIORITY_LEVELS]
            if body is not None and (t := waiting_since(bytes(body))) is not None
        ]
        if times:
            oldest[queue] = min(times)
    return oldest
