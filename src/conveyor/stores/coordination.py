"""The coordination interfaces: state shared by every worker that is not a message.

Each is small and stands alone, so a store offers what it can hold, and a transport
that can only move messages (AMQP) pairs with a coordinator on another store
(``coordinator_url``). A :class:`Coordinator` offers them all; redis, sqlite and memory
each have one, and ``tests/contract/coordination`` runs against every one.

    Leases            named leases with an owner and a TTL (beat's leader)
    ScheduleState     the last tick of each periodic entry (beat)
    UniqueKeys        idempotency keys claimed by the first send (``unique_key``)
    RateLimiter       a GCRA per task name shared by all workers, and run-time limits
    ConcurrencySlots  N running slots per key, held by live deliveries only
    RevocationLog     revoked task ids every worker honours
    WorkerRegistry    live workers and their heartbeats
    DeadLetters       messages that cannot be run, with the reason

A coordinator made by its transport's store (the default: ``coordination()`` of a
:class:`CoordinatingStore`) sees that transport's leases, so a concurrency slot is freed
the moment its delivery is settled or its consumer dies, and a unique send claims its
key and queues its message in one atomic step. One made apart keeps its own record of
live consumers (:meth:`ConcurrencySlots.renew_holders`, called where leases are renewed)
and claims a unique key before publishing, giving it back if the publish fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .transport import Transport

__all__ = [
    "ConcurrencySlots",
    "CoordinatingStore",
    "Coordinator",
    "DeadLetter",
    "DeadLetters",
    "Leases",
    "RateLimiter",
    "RevocationLog",
    "Revocations",
    "ScheduleState",
    "UniqueKeys",
    "WorkerRegistry",
    "replay_dead_letters",
]


@dataclass(slots=True)
class DeadLetter:
    id: str
    queue: str
    reason: str
    time: float
    body: bytes


@dataclass(slots=True)
class Revocations:
    """Revoked task ids, and the signal for those to terminate when running."""

    version: int
    revoked: frozenset[str]
    terminate: dict[str, str]


class Leases(ABC):
    @abstractmethod
    def hold_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``ttl`` seconds, or renew it when ``owner`` already
        holds it (compare-and-set). False while another owner's lease has not expired."""

    @abstractmethod
    def drop_lease(self, name: str, owner: str) -> None:
        """Give the lease up at once, if ``owner`` holds it."""

    @abstractmethod
    def lease_owner(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (None: nobody)."""


class ScheduleState(ABC):
    @abstractmethod
    def schedule_state(self, names: Sequence[str]) -> dict[str, float]:
        """The last tick (epoch seconds) beat recorded for each named entry that has one."""

    @abstractmethod
    def record_schedule_state(self, ticks: dict[str, float]) -> None:
        """Record the last tick of periodic entries (entry name -> epoch seconds)."""


class UniqueKeys(ABC):
    @abstractmethod
    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        """Claim ``key`` for ``task_id`` for ``ttl`` seconds. None when claimed now,
        else the task id of the send that holds it."""

    @abstractmethod
    def drop_unique(self, key: str, task_id: str) -> None:
        """Give a claim back, if ``task_id`` still holds it (its publish failed)."""

    def publish_unique(
        self,
        transport: Transport,
        queue: str,
        body: bytes,
        *,
        key: str,
        task_id: str,
        ttl: float,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> str | None:
        """Publish ``body`` on ``transport`` unless ``key`` was claimed in the last
        ``ttl`` seconds. Returns None when it was published, else the task id of the send
        that holds the key (nothing is published). A store whose transport is
        ``transport`` overrides this to claim and queue in one atomic step."""
        first = self.claim_unique(key, task_id, ttl)
        if first is not None:
            return first
        try:
            transport.publish(queue, (body,), priority=priority, countdown=countdown, eta=eta)
        except BaseException:
            self.drop_unique(key, task_id)  # not sent: a retry of this send may claim it
            raise
        return None


class RateLimiter(ABC):
    @abstractmethod
    def acquire_rate(self, name: str, per_second: float, reservation: str) -> float:
        """Take a start slot of the rate limit ``name`` (GCRA with a burst of one).

        Returns 0 to start now, else the seconds until the slot reserved for
        ``reservation`` (a task id). When that message comes back and asks again, its
        reserved slot is honoured (0) without taking another one."""

    @abstractmethod
    def set_rate_limit(self, name: str, rate: str | None) -> None:
        """Store a run-time rate limit for task ``name`` (None removes it)."""

    @abstractmethod
    def rate_limits(self) -> dict[str, str]:
        """The run-time rate limits: task name -> rate string ("0" = unlimited)."""


class ConcurrencySlots(ABC):
    @abstractmethod
    def acquire_slot(self, key: str, limit: int, consumer_id: str, tag: str) -> bool:
        """Take one of ``limit`` running slots of ``key`` for the delivery ``tag`` of
        ``consumer_id``. A slot is held only while that consumer's lease lives and (when
        ``tag`` is not empty, and the coordinator sees the transport's leases) the
        delivery is still leased to it, so a slot is never leaked by a dead worker or a
        lost release. False when all are taken."""

    @abstractmethod
    def release_slot(self, key: str, consumer_id: str, tag: str) -> None: ...

    @abstractmethod
    def renew_holders(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        """Keep these consumers' slots alive for ``lease_seconds``. Called wherever the
        transport's leases are renewed; a coordinator that reads the transport's own
        leases (same store) has nothing to do."""


class RevocationLog(ABC):
    @abstractmethod
    def revoke(self, task_ids: Sequence[str], ttl: float, terminate: str | None = None) -> None:
        """Record revocations every worker honours until ``ttl`` seconds from now (they
        survive worker restarts). ``terminate`` names a signal to stop a running task."""

    @abstractmethod
    def revocations(self, known_version: int) -> Revocations | None:
        """The live revocations when they changed since ``known_version``, else None."""


class WorkerRegistry(ABC):
    @abstractmethod
    def announce_worker(self, name: str, info: dict[str, Any], ttl: float) -> None:
        """Record a live worker (its heartbeat)."""

    @abstractmethod
    def retire_worker(self, name: str) -> None: ...

    @abstractmethod
    def workers(self) -> list[dict[str, Any]]:
        """Workers whose heartbeat is fresh."""


class DeadLetters(ABC):
    @abstractmethod
    def dead_letter(self, body: bytes, queue: str, reason: str) -> None:
        """Keep a message that cannot be run, with the reason."""

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""

    @abstractmethod
    def dead_letter_by_id(self, letter_id: str) -> DeadLetter | None: ...

    @abstractmethod
    def remove_dead_letters(self, letter_ids: Sequence[str] | None = None) -> int:
        """Delete the named dead letters (all when None); returns how many."""


class Coordinator(
    Leases,
    ScheduleState,
    UniqueKeys,
    RateLimiter,
    ConcurrencySlots,
    RevocationLog,
    WorkerRegistry,
    DeadLetters,
):
    """Every coordination interface, on one store."""

    url: str

    @abstractmethod
    def close(self) -> None: ...


class CoordinatingStore(ABC):
    """A transport whose store also holds coordination state (redis, sqlite, memory):
    it makes the default coordinator, sharing its connections and seeing its leases."""

    @abstractmethod
    def coordination(self) -> Coordinator: ...


def replay_dead_letters(
    letters: DeadLetters, transport: Transport, letter_ids: Sequence[str] | None = None
) -> int:
    """Send dead letters back to their queue (all when None), oldest first as they first
    arrived, removing each once it is queued again; returns how many."""
    chosen = (
        letters.dead_letters(limit=1_000_000)
        if letter_ids is None
        else [d for d in map(letters.dead_letter_by_id, letter_ids) if d is not None]
    )
    for letter in reversed(chosen):
        transport.publish(letter.queue, (letter.body,))
        letters.remove_dead_letters([letter.id])
    return len(chosen)
