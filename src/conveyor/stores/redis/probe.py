"""Read-only looks into queues on Redis (one Redis or a cluster): the oldest waiting
message of each queue (:class:`~conveyor.stores.probe.WaitingProbe`: ``LINDEX <level>
-1`` on each priority list, LPUSH in and RPOP out, so the oldest is at the right end)
and the messages held for their ETA (:class:`~conveyor.stores.probe.ScheduledProbe`:
``ZRANGE`` of each queue's ETA zset, whose members are ``<level digit><body>``), each
in one pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..eventlog import EventLog, EventLogStore
from ..probe import Scheduled, ScheduledProbe, WaitingProbe, waiting_since
from ..transport import PRIORITY_LEVELS
from .eventlog import RedisEventLog, RedisStore
from .keys import RedisKeys

__all__ = ["RedisLooks", "oldest_in_lists", "scheduled_in_zsets"]


class RedisLooks(EventLogStore, WaitingProbe, ScheduledProbe):
    """The read-only capabilities of a Redis transport, the same commands on one Redis
    and on a cluster: its event stream, its queues' oldest message, its ETA messages."""

    # The store's own ``client`` and ``keys`` (typed by each store), read through the
    # RedisStore protocol.
    def event_log(self: RedisStore) -> EventLog:
        return RedisEventLog(self)

    def oldest_waiting(self: RedisStore, queues: Sequence[str]) -> dict[str, float]:
        return oldest_in_lists(self.client, self.keys, queues)

    def scheduled(self: RedisStore, queues: Sequence[str], limit: int) -> list[Scheduled]:
        return scheduled_in_zsets(self.client, self.keys, queues, limit)


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


def scheduled_in_zsets(
    client: Any, keys: RedisKeys, queues: Sequence[str], limit: int
) -> list[Scheduled]:
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zrange(keys.eta(queue), 0, limit - 1, withscores=True)
    held: list[Scheduled] = []
    for queue, members in zip(queues, pipe.execute(), strict=True):
        for member, due_ms in members:
            member = bytes(member)
            held.append(Scheduled(queue, float(due_ms) / 1000.0, int(member[:1]), member[1:]))
    return held
