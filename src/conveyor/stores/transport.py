"""The transport interface: what moves messages (redis, sqlite, memory; rabbitmq next).

A transport holds messages it cannot read (the envelope is opaque bytes to it). It does
seven things: publish, hand out a consumer (fetch, settle, release), give back another
consumer's unstarted messages, count and purge queues, say whether it can write a result
backend's records in its acks, and close. Everything shared by the workers that is not
a message (beat's lease, rate limits, slots, revocations, the worker registry, dead
letters) is coordination: ``coordination.py``, chosen apart (``coordinator_url``).

Deliveries that are *leases* are a capability beside the interface,
:class:`LeasedDeliveries`: the message stays in the store, owned by one consumer, until
that consumer acks or releases it, or stops renewing its lease (it died) and another
worker reclaims it. There is no visibility timeout: a live consumer keeps its deliveries
for as long as its tasks run (leases, not a visibility timeout: celery#5935,
kombu#1097). A transport whose deliveries die with their channel (AMQP) has no use for
it; the prefork supervisor, which settles for children it lost, asks for it at start
(:func:`require_leases`), so a transport without it is a ConfigurationError there, not a
``NotImplementedError`` mid-run.

The contract suite in ``tests/contract/transport`` runs against every implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .urls import masked

if TYPE_CHECKING:
    from .results import ResultBackend

__all__ = [
    "PRIORITY_LEVELS",
    "ConnectionBoundDeliveries",
    "Deferrals",
    "Delivery",
    "LeasedDeliveries",
    "QueueStats",
    "ResultWrite",
    "SharedSchedule",
    "Transport",
    "TransportConsumer",
    "leases_of",
    "priority_level",
    "require_deferrals",
    "require_leases",
    "require_safe_deliveries",
]

PRIORITY_LEVELS = 10


def priority_level(priority: int | None) -> int:
    """The level a priority is queued at (0-9, 0 served first; None is 0), checked
    once here for every transport."""
    if priority is None:
        return 0
    if not 0 <= priority < PRIORITY_LEVELS:
        raise ValueError(f"priority must be 0-9 (0 is served first), got {priority}")
    return int(priority)


@dataclass(slots=True)
class Delivery:
    """One delivered message."""

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
    """A state to store for a task, handed to the transport when it can store it in the
    same step as the ack (its store holds the result backend too)."""

    task_id: str
    payload: bytes
    final: bool


@dataclass(slots=True)
class QueueStats:
    name: str
    ready: int = 0
    scheduled: int = 0
    by_priority: dict[int, int] = field(default_factory=dict)


class TransportConsumer(ABC):
    """One consuming loop's handle on the transport. Not shared between threads."""

    consumer_id: str
    # True when ack() and store() also write results: on the transport's own store
    # (Transport.carries_results_of: Redis results on the broker's Redis) or on a link of
    # the consumer's own to a result backend that offers StoreBehind (AMQP + Redis).
    carries_results: bool = False

    @abstractmethod
    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        """Take up to ``limit`` messages, waiting up to ``timeout`` seconds for one."""

    @abstractmethod
    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        """Settle: the message is done, and ``result`` (stored first, in the same step
        when :attr:`carries_results`) is its outcome. May be sent without waiting for a
        reply, but must be on its way before this returns."""

    def store(self, result: ResultWrite) -> bool:
        """Store an interim state in the same stream as the acks, if this consumer
        carries the results; False means the caller must store it itself."""
        return False

    @abstractmethod
    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give unstarted messages back to the front of their queue."""

    @abstractmethod
    def recover(self, known_tags: set[str]) -> int:
        """After a lost connection: give back messages this consumer holds but no longer
        knows about (a fetch whose reply never arrived). Returns how many."""

    @abstractmethod
    def flush(self) -> None:
        """Wait until everything sent so far has been applied."""

    @abstractmethod
    def close(self) -> None: ...


class Transport(ABC):
    """Moves messages. Thread-safe; its consumers are not."""

    url: str
    # Where this transport's records live, e.g. "redis://host:6379/0 conveyor": equal
    # to a result backend's ``location`` when both live in one store.
    location: str

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
        """Queue messages now, or hold them in the store until ``countdown`` seconds
        from now (store clock) or until the epoch time ``eta``."""

    @abstractmethod
    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None = None,
    ) -> TransportConsumer:
        """A handle for one consuming loop.

        ``results`` is the app's result backend: when :meth:`carries_results_of` says
        so, the consumer writes results in the same step as the ack."""

    @abstractmethod
    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        """Thread-safe form of :meth:`TransportConsumer.release` (the keeper gives back a
        loop's prefetched messages at shutdown)."""

    @abstractmethod
    def queues(self) -> list[QueueStats]:
        """Every known queue with its depth."""

    @abstractmethod
    def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting and scheduled messages; returns how many."""

    def carries_results_of(self, backend: ResultBackend) -> bool:
        """True when this transport's acks can store ``backend``'s records in the same
        step: the two live in one store (same location)."""
        return backend.location == self.location

    @abstractmethod
    def close(self) -> None: ...


class SharedSchedule(ABC):
    """The capability of a transport whose scheduled (ETA) messages wait in a place
    shared by all its queues (RabbitMQ's delay levels): it counts them together, since
    it cannot count them per queue (its ``QueueStats.scheduled`` is 0)."""

    @abstractmethod
    def scheduled_total(self) -> int:
        """Scheduled messages waiting for any queue of this transport."""


class Deferrals(ABC):
    """The capability to put a delivered message that may not start yet back, due later
    (the admission gate defers rate-limited tasks). Leasing transports do it in one
    atomic step; an AMQP transport publishes a delayed copy (confirmed), then acks."""

    @abstractmethod
    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        """Give a message that did not start back to its queue, due in ``delay``
        seconds (like an ETA); it does not count as a delivery."""


class LeasedDeliveries(Deferrals):
    """The capability of a transport whose deliveries are leases held by a consumer id
    (redis, sqlite, memory). The keeper renews them; the prefork supervisor reads and
    settles what a lost child held; the flow gate defers a message that may not start."""

    @abstractmethod
    def renew(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        """Extend the leases of live consumers."""

    @abstractmethod
    def reclaim(self, consumer_id: str | None = None) -> int:
        """Requeue the deliveries of consumers whose lease expired (or of one consumer,
        now: its process is known to be gone). Returns how many messages went back."""

    @abstractmethod
    def discard(self, consumer_id: str, tags: Sequence[str]) -> None:
        """End leases without running the messages again: the supervisor already
        recorded their outcome (hard time limit, terminated by revoke, worker lost)."""

    @abstractmethod
    def leased_body(self, consumer_id: str, tag: str) -> bytes | None:
        """The body of a message a consumer holds (the supervisor reads the one a killed
        child was running, to settle its workflow); None when it holds no such lease."""

    @abstractmethod
    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        """Give a leased message that did not start back to its queue, due in ``delay``
        seconds (like an ETA), in one atomic step; it does not count as a delivery."""

    @abstractmethod
    def inflight_count(self) -> int:
        """How many messages are leased now, over every consumer."""


class ConnectionBoundDeliveries:
    """The capability of a transport whose deliveries end with their consumer's
    connection (AMQP): the broker gives back at once what a dead consumer held and never
    takes a delivery from a live one, so there is nothing to renew, reclaim or discard.
    A transport that has neither this nor :class:`LeasedDeliveries` cannot feed a worker
    without losing what a crashed one held."""


def require_safe_deliveries(transport: Transport, needed_by: str) -> None:
    """A ConfigurationError, at start, unless ``transport``'s deliveries are leases or
    end with their connection."""
    if not isinstance(transport, (LeasedDeliveries, ConnectionBoundDeliveries)):
        raise ConfigurationError(
            f"{needed_by} needs a transport whose deliveries are leases (redis, sqlite, "
            f"memory) or end with their connection (amqp); {type(transport).__name__} "
            f"({masked(transport.url)}) has neither"
        )


def leases_of(transport: Transport) -> LeasedDeliveries | None:
    """``transport``'s leases, or None for a transport whose deliveries end with their
    connection (AMQP: a dead consumer's messages return at once, nothing to renew,
    reclaim or discard)."""
    return transport if isinstance(transport, LeasedDeliveries) else None


def require_deferrals(transport: Transport, needed_by: str) -> Deferrals:
    if isinstance(transport, Deferrals):
        return transport
    raise ConfigurationError(
        f"{needed_by} needs a transport that can defer deliveries; "
        f"{type(transport).__name__} ({masked(transport.url)}) cannot"
    )


def require_leases(transport: Transport, needed_by: str) -> LeasedDeliveries:
    """``transport`` as :class:`LeasedDeliveries`, or a ConfigurationError saying who
    needed it: asked once at start, so a missing capability never surfaces mid-run."""
    if isinstance(transport, LeasedDeliveries):
        return transport
    raise ConfigurationError(
        f"{needed_by} needs a transport whose deliveries are leases (redis, sqlite, "
        f"memory); {type(transport).__name__} ({masked(transport.url)}) has none"
    )
