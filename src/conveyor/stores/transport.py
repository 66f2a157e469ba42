"""The broker interface: what every transport (redis, sqlite, memory) must do.

A broker holds messages it cannot read (the envelope is opaque bytes to it). Every
delivery is a *lease*: the message stays in the broker, owned by one consumer, until
that consumer acks it or releases it, or until the consumer stops renewing its lease
(it died) and another consumer reclaims it. There is no visibility timeout: a live
consumer keeps its deliveries for as long as its tasks run (leases, not a visibility
timeout: celery#5935, kombu#1097).

The contract suite in ``tests/contract`` runs against every implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Broker",
    "BrokerConsumer",
    "DeadLetter",
    "Delivery",
    "QueueStats",
    "ResultWrite",
    "Revocations",
]

PRIORITY_LEVELS = 10


def priority_level(priority: int | None) -> int:
    """The level a priority is queued at (0-9, 0 served first; None is 0), checked
    once here for every broker."""
    if priority is None:
        return 0
    if not 0 <= priority < PRIORITY_LEVELS:
        raise ValueError(f"priority must be 0-9 (0 is served first), got {priority}")
    return int(priority)


@dataclass(slots=True)
class Delivery:
    """One leased message."""

    tag: str
    body: bytes
    queue: str
    priority: int
    deliveries: int = 1  # 1 the first time; more after a worker died holding it

    @property
    def redelivered(self) -> bool:
        return self.deliveries > 1


@dataclass(slots=True, frozen=True)
class ResultWrite:
    """A state to store for a task, handed to the broker when it can store it alongside
    the ack in the same round trip (a co-located backend)."""

    task_id: str
    payload: bytes
    final: bool


@dataclass(slots=True)
class QueueStats:
    name: str
    ready: int = 0
    scheduled: int = 0
    by_priority: dict[int, int] = field(default_factory=dict)


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


class BrokerConsumer(ABC):
    """One consuming loop's handle on the broker. Not shared between threads."""

    consumer_id: str
    # True when ack() and store() also write results (the backend lives in the broker).
    carries_results: bool = False

    @abstractmethod
    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        """Lease up to ``limit`` messages, waiting up to ``timeout`` seconds for one."""

    @abstractmethod
    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        """End the lease: the message is done. May be sent without waiting for a reply,
        but must be on its way before this returns. ``result`` is stored first."""

    def store(self, result: ResultWrite) -> bool:
        """Store an interim state in the same stream as the acks, if this consumer
        carries the results; False means the caller must store it itself."""
        return False

    @abstractmethod
    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give unstarted messages back to the front of their queue."""

    @abstractmethod
    def recover(self, known_tags: set[str]) -> int:
        """After a lost connection: give back leases this consumer holds but no longer
        knows about (a fetch whose reply never arrived). Returns how many."""

    @abstractmethod
    def flush(self) -> None:
        """Wait until everything sent so far has been applied."""

    @abstractmethod
    def close(self) -> None: ...


class Broker(ABC):
    """A transport. Thread-safe; consumers are not."""

    url: str

    @abstractmethod
    def publish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        """Queue messages now, or hold them in the broker until ``countdown`` seconds
        from now (broker clock) or until the epoch time ``eta``."""

    @abstractmethod
    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: Any = None,
    ) -> BrokerConsumer:
        """A handle for one consuming loop; its lease starts with its first fetch.

        ``results`` is the app's result backend: a broker that lives in the same store
        (:meth:`colocated_with`) writes results in the same round trip as the ack."""

    @abstractmethod
    def renew(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        """Extend the leases of live consumers."""

    @abstractmethod
    def reclaim(self, consumer_id: str | None = None) -> int:
        """Requeue the deliveries of consumers whose lease expired (or of one consumer,
        now: its process is known to be gone). Returns how many messages went back."""

    @abstractmethod
    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        """Thread-safe form of :meth:`BrokerConsumer.release`."""

    @abstractmethod
    def dead_letter(self, body: bytes, queue: str, reason: str) -> None:
        """Keep a message that cannot be run, with the reason."""

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""

    def dead_letter_by_id(self, letter_id: str) -> DeadLetter | None:
        for letter in self.dead_letters(limit=1_000_000):
            if letter.id == letter_id:
                return letter
        return None

    def remove_dead_letters(self, letter_ids: Sequence[str] | None = None) -> int:
        """Delete the named dead letters (all when None); returns how many."""
        raise NotImplementedError(f"{type(self).__name__} cannot remove dead letters")

    def replay_dead_letters(self, letter_ids: Sequence[str] | None = None) -> int:
        """Send dead letters back to their queue (all when None) and remove them."""
        letters = (
            self.dead_letters(limit=1_000_000)
            if letter_ids is None
            else [d for d in map(self.dead_letter_by_id, letter_ids) if d is not None]
        )
        for letter in reversed(letters):  # oldest first, as they first arrived
            self.publish(letter.queue, (letter.body,))
            self.remove_dead_letters([letter.id])
        return len(letters)

    @abstractmethod
    def queues(self) -> list[QueueStats]:
        """Every known queue with its depth."""

    @abstractmethod
    def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting and scheduled messages; returns how many."""

    @abstractmethod
    def announce_worker(self, name: str, info: dict[str, Any], ttl: float) -> None:
        """Record a live worker (its heartbeat)."""

    @abstractmethod
    def retire_worker(self, name: str) -> None: ...

    @abstractmethod
    def workers(self) -> list[dict[str, Any]]:
        """Workers whose heartbeat is fresh."""

    # revocation and supervisor verdicts ----------------------------------------------
    def discard(self, consumer_id: str, tags: Sequence[str]) -> None:
        """End leases without running the messages again: the supervisor already
        recorded their outcome (hard time limit, terminated by revoke, worker lost)."""
        raise NotImplementedError(f"{type(self).__name__} cannot discard deliveries")

    def leased_body(self, consumer_id: str, tag: str) -> bytes | None:
        """The body of a message a consumer holds (the supervisor reads the one a killed
        child was running, to settle its workflow); None when it holds no such lease."""
        raise NotImplementedError(f"{type(self).__name__} cannot read leased messages")

    def revoke(self, task_ids: Sequence[str], ttl: float, terminate: str | None = None) -> None:
        """Record revocations every worker honours until ``ttl`` seconds from now (they
        survive worker restarts). ``terminate`` names a signal to stop a running task."""
        raise NotImplementedError(f"{type(self).__name__} cannot store revocations")

    def revocations(self, known_version: int) -> Revocations | None:
        """The live revocations when they changed since ``known_version``, else None."""
        return None

    # scheduling and flow control (beat, rate and concurrency limits, unique sends) ----
    # Implemented by a mixin per broker (redis_flow.py, sqlite_flow.py, memory_flow.py);
    # docs/architecture.md, "Scheduling and flow control", says how each one works.
    def hold_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease ``name`` for ``ttl`` seconds, or renew it when ``owner`` already
        holds it (compare-and-set). False while another owner's lease has not expired."""
        raise NotImplementedError(f"{type(self).__name__} has no leases")

    def drop_lease(self, name: str, owner: str) -> None:
        """Give the lease up at once, if ``owner`` holds it."""
        raise NotImplementedError(f"{type(self).__name__} has no leases")

    def lease_owner(self, name: str) -> str | None:
        """Who holds the lease ``name`` now (None: nobody)."""
        raise NotImplementedError(f"{type(self).__name__} has no leases")

    def schedule_state(self, names: Sequence[str]) -> dict[str, float]:
        """The last tick (epoch seconds) beat recorded for each named entry that has one."""
        raise NotImplementedError(f"{type(self).__name__} keeps no schedule state")

    def record_schedule_state(self, ticks: dict[str, float]) -> None:
        """Record the last tick of periodic entries (entry name -> epoch seconds)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no schedule state")

    def publish_unique(
        self,
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
        """Publish ``body`` unless ``key`` was claimed in the last ``ttl`` seconds; the
        claim and the publish are one atomic step. Returns None when it was published,
        else the task id of the send that holds the key (nothing is published)."""
        raise NotImplementedError(f"{type(self).__name__} cannot publish uniquely")

    def acquire_rate(self, name: str, per_second: float, reservation: str) -> float:
        """Take a start slot of the rate limit ``name`` (GCRA with a burst of one).

        Returns 0 to start now, else the seconds until the slot reserved for
        ``reservation`` (a task id). When that message comes back and asks again, its
        reserved slot is honoured (0) without taking another one."""
        raise NotImplementedError(f"{type(self).__name__} has no rate limiter")

    def set_rate_limit(self, name: str, rate: str | None) -> None:
        """Store a run-time rate limit for task ``name`` (None removes it)."""
        raise NotImplementedError(f"{type(self).__name__} has no rate limiter")

    def rate_limits(self) -> dict[str, str]:
        """The run-time rate limits: task name -> rate string ("0" = unlimited)."""
        raise NotImplementedError(f"{type(self).__name__} has no rate limiter")

    def acquire_slot(self, key: str, limit: int, consumer_id: str, tag: str) -> bool:
        """Take one of ``limit`` running slots of ``key`` for the delivery ``tag`` of
        ``consumer_id``. A slot is held only while that consumer's lease lives and (when
        ``tag`` is not empty) the delivery is still leased to it, so a slot is never
        leaked by a dead worker or a lost release. False when all are taken."""
        raise NotImplementedError(f"{type(self).__name__} has no concurrency slots")

    def release_slot(self, key: str, consumer_id: str, tag: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no concurrency slots")

    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        """Give a leased message that did not start back to its queue, due in ``delay``
        seconds (like an ETA), in one atomic step; it does not count as a delivery."""
        raise NotImplementedError(f"{type(self).__name__} cannot defer deliveries")

    def colocated_with(self, backend: object) -> bool:
        """True when this broker can store ``backend``'s results in its ack."""
        return False

    @abstractmethod
    def close(self) -> None: ...
