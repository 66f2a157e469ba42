"""Read-only looks into a broker's queues, each a capability a store offers:

- :class:`WaitingProbe`: when the oldest waiting message of each queue became due, for
  the ``conveyor_queue_oldest_message_age_seconds`` gauge (observe/metrics.py) and the
  dashboard;
- :class:`ScheduledProbe`: the messages held for their ETA (countdown, eta, a retry's
  delay), earliest first, for ``inspect scheduled``.

Redis: ``LINDEX <level> -1`` on each priority list (LPUSH in, RPOP out: the oldest is
at the right end), one pipeline. SQLite: ``min(due)`` of the waiting rows (``due`` is
the publish time, or the ETA of a promoted message). Memory: the head of each level.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from .transport import Transport

__all__ = [
    "Scheduled",
    "ScheduledProbe",
    "WaitingProbe",
    "oldest_waiting",
    "scheduled_messages",
    "waiting_since",
]


class _Sent(msgspec.Struct):
    sent_at: float = 0.0
    eta: float | None = None


_decode = msgspec.json.Decoder(_Sent).decode


def waiting_since(body: bytes) -> float | None:
    """When the message ``body`` became due (its send time, or its ETA), from the
    envelope's JSON; None when it cannot be read that way."""
    try:
        sent = _decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not JSON (msgpack, signed): no age rather than a wrong one
    return max(sent.sent_at, sent.eta or 0.0) or None


class WaitingProbe(ABC):
    """The capability of a transport that can say, without taking anything, when the
    oldest waiting message of each queue became due (redis, cluster, sqlite, memory).
    A transport without it (amqp: a queue cannot be peeked without a delivery) reports
    no age."""

    @abstractmethod
    def oldest_waiting(self, queues: Sequence[str]) -> dict[str, float]:
        """Queue name -> when its oldest waiting message became due (epoch seconds); a
        queue with nothing waiting (or whose oldest message cannot be read) is left out.
        Read-only, and cheap enough to run on every scrape."""


def oldest_waiting(broker: Transport, queues: Sequence[str]) -> dict[str, float]:
    """``broker``'s :meth:`WaitingProbe.oldest_waiting`, or nothing when it has none."""
    if isinstance(broker, WaitingProbe):
        return broker.oldest_waiting(queues)
    return {}


@dataclass(slots=True, frozen=True)
class Scheduled:
    """A message held in the broker until ``due`` (epoch seconds)."""

    queue: str
    due: float
    priority: int
    body: bytes


class ScheduledProbe(ABC):
    """The capability of a transport that can list the messages it holds for their ETA
    without taking them (redis, cluster, sqlite, memory). AMQP cannot: its delayed
    messages wait in delay queues shared by every queue."""

    @abstractmethod
    def scheduled(self, queues: Sequence[str], limit: int) -> list[Scheduled]:
        """Up to ``limit`` messages per queue held for their ETA, earliest first (one
        that fell due a moment ago may still be listed until a consumer moves it)."""


def scheduled_messages(
    broker: Transport, queues: Sequence[str], limit: int
) -> list[Scheduled] | None:
    """``broker``'s :meth:`ScheduledProbe.scheduled`, or None when it cannot list them."""
    if isinstance(broker, ScheduledProbe):
        return broker.scheduled(queues, limit)
    return None
