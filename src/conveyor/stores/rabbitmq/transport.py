"""The RabbitMQ transport (``amqp://``, ``amqps://``, ``pyamqp://``) on py-amqp.

It only moves messages: coordination (leases for beat, rate limits, revocations, chord
joins, unique keys, the worker registry, dead letters) pairs with a coordinator on
another store, and results go to any result backend. Its deliveries are not leases:
RabbitMQ holds a delivery for its consumer's connection, returns it the moment that
connection dies (a SIGKILLed worker's messages go back at once) and never takes it from
a live consumer (``x-consumer-timeout`` on every consumer, so a 3-hour task is not
redelivered: see docs/architecture.md for RabbitMQ < 3.11.15).

Every publish waits for RabbitMQ's publisher confirm, so a ``.delay()`` that returned
is in the broker (persistent, on a durable queue); a batch is confirmed once, pipelined.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import amqp

from ...exceptions import BrokerError, BrokerUnavailable, ConfigurationError
from ..transport import (
    ConnectionBoundDeliveries,
    Deferrals,
    Delivery,
    QueueStats,
    SharedSchedule,
    Transport,
    TransportConsumer,
    priority_level,
)
from .channel import AmqpChannel
from .connection import mapped_errors, parse_amqp_url
from .topology import (
    DELAY_LEVELS,
    DELIVERIES_HEADER,
    DUE_HEADER,
    QUEUE_HEADER,
    amqp_priority,
    delay_path,
    delay_queue,
)

if TYPE_CHECKING:
    from ..results import ResultBackend
    from .consumer import AmqpConsumer

__all__ = ["AmqpTransport"]

logger = logging.getLogger("conveyor.rabbitmq")

T = TypeVar("T")

CONFIRM_TIMEOUT = 30.0
PUBLISH_ATTEMPTS = 3
QUEUE_TYPES = ("classic", "quorum")
# Transport options (``broker_transport_options``) this transport reads.
OPTIONS = {"queue_type", "delivery_limit", "consumer_timeout", "known_queues", "confirm_publish"}


class BoundedDict(OrderedDict[str, int]):
    """A dict that forgets its oldest entries past ``size`` (thread-safe enough for
    single set/pop calls under the GIL)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: str, value: int) -> None:
        super().__setitem__(key, value)
        if len(self) > self.size:
            self.popitem(last=False)


class _Confirms:
    """Publisher confirms of one channel: the highest tag acked, and any nacked."""

    def __init__(self) -> None:
        self.acked = 0
        self.nacked: list[int] = []
        self.returned = 0
        self.next_tag = 1

    def reset(self) -> None:
        self.acked, self.nacked, self.returned, self.next_tag = 0, [], 0, 1

    def on_return(self, *_: Any) -> None:
        """An unroutable message (published mandatory): its queue is missing."""
        self.returned += 1

    def on_ack(self, tag: int, multiple: bool) -> None:
        self.acked = max(self.acked, tag)

    def on_nack(self, tag: int, multiple: bool) -> None:
        self.nacked.append(tag)
        self.acked = max(self.acked, tag)


class AmqpTransport(Transport, Deferrals, ConnectionBoundDeliveries, SharedSchedule):
    """Thread-safe: publishes go through one confirmed channel under a lock; each
    consumer has a connection of its own."""

    def __init__(self, url: str, **options: Any) -> None:
        transport_options: dict[str, Any] = dict(options.pop("transport_options", None) or {})
        unknown = sorted(set(transport_options) - OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"unknown RabbitMQ transport option(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(OPTIONS))})"
            )
        if transport_options.pop("confirm_publish", True) is not True:
            raise ConfigurationError(
                "confirm_publish is always on for RabbitMQ: a .delay() that returned is in "
                "the broker"
            )
        routed: list[str] = list(options.pop("known_queues", None) or ())
        self.settings = parse_amqp_url(url, **options)
        self.url = url
        self.location = (
            f"amqp://{self.settings.host}:{self.settings.port}/{self.settings.virtual_host}"
        )
        self.queue_type = str(transport_options.get("queue_type", "classic"))
        if self.queue_type not in QUEUE_TYPES:
            raise ConfigurationError(
                f"queue_type must be 'classic' or 'quorum', got {self.queue_type!r}"
            )
        limit = transport_options.get("delivery_limit", 20 if self.queue_type == "quorum" else None)
        self.delivery_limit: int | None = None if limit is None else int(limit)
        # Milliseconds a consumer may hold a delivery unacked; far beyond any task (the
        # worker's death, not a timer, is what gives a delivery back).
        self.consumer_timeout = int(transport_options.get("consumer_timeout", 2**31 - 1))
        self.known_queues: list[str] = [*routed, *transport_options.get("known_queues", ())]
        self._confirms = _Confirms()
        self._publisher = self.open_channel(on_open=self._confirm_mode)
        self._consumers: weakref.WeakValueDictionary[str, AmqpConsumer] = (
            weakref.WeakValueDictionary()
        )
        self._seen_queues: set[str] = set(self.known_queues)
        # message id -> delivery count of messages this process gave back unstarted
        self.released: BoundedDict = BoundedDict(100_000)

    def open_channel(self, **kwargs: Any) -> AmqpChannel:
        return AmqpChannel(
            self.settings,
            queue_type=self.queue_type,
            delivery_limit=self.delivery_limit,
            **kwargs,
        )

    def _confirm_mode(self, channel: amqp.Channel) -> None:
        self._confirms.reset()
        channel.confirm_select()
        channel.events["basic_ack"].add(self._confirms.on_ack)
        channel.events["basic_nack"].add(self._confirms.on_nack)
        channel.events["basic_return"].add(self._confirms.on_return)

    # publishing ----------------------------------------------------------------------
    def publish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        level = priority_level(priority)
        if level and self.queue_type == "quorum":
            raise ValueError(
                "quorum queues have no priorities on RabbitMQ 3.x: send with priority 0 "
                "or use classic queues (broker_transport_options={'queue_type': 'classic'})"
            )
        now = time.time()
        due = now + max(0.0, countdown) if countdown is not None else eta
        if not bodies:
            return
        self._seen_queues.add(queue)
        self._on_publisher(lambda: self._publish_confirmed(queue, bodies, level, due))

    def _on_publisher(self, work: Callable[[], T]) -> T:
        """Run ``work`` (publishes and the wait for their confirms, or queue methods) on
        the publisher's channel under its lock; on a lost connection, drop it and run
        again on a new one. Sent again: what was confirmed is in the broker, what was
        not may be sent twice (at least once, never lost)."""
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                with self._publisher.lock, mapped_errors(self.settings):
                    return work()
            except BrokerUnavailable as exc:
                # Forgotten, or every later send would use the dead connection until the
                # heartbeat thread noticed (up to broker_heartbeat / 4 later).
                self._publisher.lost(exc)
                if attempt == PUBLISH_ATTEMPTS:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _publish_confirmed(
        self, queue: str, bodies: Sequence[bytes], level: int, due: float | None
    ) -> None:
        publisher = self._publisher
        publisher.declare_queue(queue)
        headers: dict[str, Any] = {}
        routing_key = queue
        delay_ms = 0 if due is None else round((due - time.time()) * 1000)
        if delay_ms > 0:
            publisher.declare_delays()
            routing_key, path = delay_path(delay_ms)
            headers = {QUEUE_HEADER: queue, DUE_HEADER: float(due or 0), **path}
        channel = publisher.channel()  # after the declarations, which may reopen it
        confirms = self._confirms
        for body in bodies:
            message = amqp.Message(
                body,
                delivery_mode=2,
                priority=amqp_priority(level),
                message_id=uuid.uuid4().hex,
                application_headers=headers,
            )
            # mandatory: RabbitMQ confirms a message no queue took, and would drop it
            channel.basic_publish(message, "", routing_key, mandatory=True)
            confirms.next_tag += 1
        self._await_confirms(confirms.next_tag - 1)

    def _await_confirms(self, last_tag: int) -> None:
        confirms = self._confirms
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while confirms.acked < last_tag:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(
                    f"RabbitMQ at {self.settings.masked_url} did not confirm a publish "
                    f"in {CONFIRM_TIMEOUT:.0f}s",
                    self.settings.masked_url,
                )
            self._publisher.drain(remaining)
        if confirms.returned:
            confirms.returned = 0
            # The queue vanished (deleted, or not yet recovered): declared again and
            # sent again by publish()'s retry, never dropped.
            raise BrokerUnavailable(
                f"RabbitMQ at {self.settings.masked_url} returned unroutable messages",
                self.settings.masked_url,
            )
        if confirms.nacked:
            refused, confirms.nacked = confirms.nacked, []
            raise BrokerError(
                f"RabbitMQ refused {len(refused)} message(s) (publisher nack): "
                "it could not store them"
            )

    # consuming -------------------------------------------------------------------------
    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None = None,
    ) -> TransportConsumer:
        from .consumer import AmqpConsumer

        if not queues:
            raise ValueError("a consumer needs at least one queue")
        self._seen_queues.update(queues)
        consumer = AmqpConsumer(self, list(queues), consumer_id, results)
        self._consumers[consumer_id] = consumer
        return consumer

    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        """Queue a give-back for the consumer's own thread (py-amqp channels are not
        shared); a consumer already closed gave everything back with its connection."""
        consumer = self._consumers.get(consumer_id)
        if consumer is not None:
            consumer.release_later(deliveries)

    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        """A delayed copy (confirmed, same delivery count), then the original acked: at
        least once (a crash between the two sends it twice, never loses it)."""
        consumer = self._consumers.get(consumer_id)
        if consumer is None:
            raise ValueError(f"no consumer {consumer_id!r} in this process")
        self.republish(
            delivery.queue,
            delivery.body,
            {DELIVERIES_HEADER: delivery.deliveries - 1},
            amqp_priority(delivery.priority),
            due=time.time() + max(delay, 0.0),
        )
        consumer.ack(delivery)

    def republish(self, queue: str, body: bytes, headers: dict[str, Any], priority: int,
                  due: float | None = None) -> None:
        """Send a copy of a delivered message (with the header counting its deliveries,
        or through the delay levels again), confirmed, before its original is acked."""
        self._on_publisher(lambda: self._republish_confirmed(queue, body, headers, priority, due))

    def _republish_confirmed(self, queue: str, body: bytes, headers: dict[str, Any],
                             priority: int, due: float | None) -> None:
        self._publisher.declare_queue(queue)
        routing_key = queue
        if due is not None:
            self._publisher.declare_delays()
            routing_key, path = delay_path(round((due - time.time()) * 1000))
            headers = {**headers, QUEUE_HEADER: queue, DUE_HEADER: due, **path}
        channel = self._publisher.channel()
        message = amqp.Message(
            body, delivery_mode=2, priority=priority, message_id=uuid.uuid4().hex,
            application_headers=headers,
        )
        channel.basic_publish(message, "", routing_key, mandatory=True)
        self._confirms.next_tag += 1
        self._await_confirms(self._confirms.next_tag - 1)

    # queues -----------------------------------------------------------------------------
    def queues(self) -> list[QueueStats]:
        """Depth of every queue this process knows (declared, consumed or named in
        ``known_queues``): AMQP cannot list a vhost's queues without the management
        plugin. Messages waiting in the delay levels are shared by all queues and
        cannot be counted per queue without taking each one out: ``scheduled`` is 0
        here and ``scheduled_total()`` counts them together (docs/architecture.md)."""
        return self._on_publisher(self._queue_stats)

    def _queue_stats(self) -> list[QueueStats]:
        stats: list[QueueStats] = []
        for name in sorted(self._seen_queues):
            self._publisher.declare_queue(name)
            _, ready, _ = self._publisher.channel().queue_declare(name, passive=True)
            stats.append(QueueStats(name, int(ready)))
        return stats

    def scheduled_total(self) -> int:
        """Messages waiting in the delay levels, for every queue of the vhost."""
        return self._on_publisher(self._scheduled_total)

    def _scheduled_total(self) -> int:
        self._publisher.declare_delays()
        channel = self._publisher.channel()
        return sum(
            int(channel.queue_declare(delay_queue(level), passive=True)[1])
            for level in range(DELAY_LEVELS)
        )

    def purge(self, queues: Sequence[str]) -> int:
        """Delete the queues' waiting messages and their scheduled ones. The delay
        levels are shared by all queues, so they are read through: a message for
        another queue is sent on again for exactly the time it had left (confirmed,
        then the original acked), one for these queues is dropped. Levels are read from
        the longest down, the way messages move, so none slips past; the work queues
        are purged last (what fell due meanwhile is in them)."""
        return self._on_publisher(lambda: self._purge(queues))

    def _purge(self, queues: Sequence[str]) -> int:
        count = self._purge_delayed(set(queues))
        for name in queues:
            self._publisher.declare_queue(name)
            count += int(self._publisher.channel().queue_purge(name) or 0)
        return count

    def _purge_delayed(self, queues: set[str]) -> int:
        self._publisher.declare_delays()
        channel = self._publisher.channel()
        dropped = 0
        for level in range(DELAY_LEVELS - 1, -1, -1):
            name = delay_queue(level)
            waiting = int(channel.queue_declare(name, passive=True)[1])
            for _ in range(waiting):  # not those sent on into this level meanwhile
                message = channel.basic_get(name, no_ack=False)
                if message is None:
                    break
                headers: dict[str, Any] = message.properties.get("application_headers") or {}
                queue = str(headers.get(QUEUE_HEADER, ""))
                if not queue:  # not conveyor's: put back untouched, and leave this level
                    channel.basic_reject(message.delivery_info["delivery_tag"], requeue=True)
                    break
                if queue in queues:
                    dropped += 1
                else:
                    kept = {k: v for k, v in headers.items() if k == DELIVERIES_HEADER
                            or not k.startswith(("x-", "conveyor-after"))}
                    due = float(headers.get(DUE_HEADER) or time.time())
                    self._republish_confirmed(queue, bytes(message.body), kept,
                                              int(message.properties.get("priority") or 0), due)
                channel.basic_ack(message.delivery_info["delivery_tag"])
        return dropped

    def close(self) -> None:
        for consumer in list(self._consumers.values()):
            consumer.close()
        self._publisher.close()

