"""The control mailbox on a Redis Cluster: the Redis mailbox's inboxes and replies (each
key its own slot: one command each), and ``held`` read queue by queue, since a consumer's
leases live in each queue's slot (``<p>:{q:<name>}:inflight:<consumer>``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cluster import make_tag
from .connection import text
from .mailbox import RedisMailbox

if TYPE_CHECKING:
    from .cluster import RedisClusterTransport

__all__ = ["RedisClusterMailbox"]


class RedisClusterMailbox(RedisMailbox):
    def __init__(self, broker: RedisClusterTransport) -> None:
        # Not RedisMailbox.__init__ (it takes a RedisTransport): the same two attributes.
        self.client = broker.client  # type: ignore[assignment]  # same commands, by slot
        self.keys = broker.keys
        self._transport = broker

    def held(self, consumer_id: str) -> list[tuple[str, bytes]]:
        held = []
        for queue in self._transport.known_queues():
            key = self._transport.keys.queue_inflight(queue, consumer_id)
            entries: Any = self.client.hgetall(key)
            for number, value in entries.items():
                body = bytes(value).split(b"\n", 2)[2]  # list key \n deliveries \n body
                held.append((make_tag(int(text(number)), queue), body))
        return held
