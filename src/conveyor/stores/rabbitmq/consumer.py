"""One consuming loop's AMQP connection: basic.consume with a bounded prefetch, late
acks, and reconnection after a node restart.

- Prefetch (basic.qos) is what the loop holds plus what it asks for: a fetch of ``n``
  while ``h`` deliveries are unsettled sets the prefetch to ``h + n``, so the worker
  holds no more than its slots and a slow task never keeps fast ones hostage behind it
  on this worker (Celery's prefetch-multiplier trap, celery#4470). It is the channel's
  limit (``global``), over all the loop's queues, and RabbitMQ applies a change of it to
  the consumers already there (a per-consumer qos binds only consumers made after it).
- Acks are sent when the task ends (late ack). A tag from a connection that died is
  void: RabbitMQ already gave its message back, and acking it on the new channel would
  close that channel (PRECONDITION_FAILED unknown delivery tag).
- Results ride behind the acks when the result backend offers it (``StoreBehind``,
  Redis): the result is written on the loop's own backend link without waiting for
  the reply, then basic.ack leaves. An ack whose results link is down (or has a reply
  overdue that does not come) waits in ``_waiting`` until the link confirms every
  write; the next fetch or flush confirms and sends it. See docs/architecture.md,
  "Results behind AMQP acks", for the crash windows.
- Classic queues only flag a redelivery; to count deliveries (``task_max_deliveries``
  dead-letters a message that kills its worker every time) a redelivered message is
  sent again, confirmed, with ``x-conveyor-deliveries`` one higher, and the original
  acked. Quorum queues count themselves (``x-delivery-count``). A message this process
  gave back unstarted (release: basic.reject to the front of its queue) is known by its
  message id when it returns, and keeps its count.
- A delayed message that arrives early (delays past the 24.8 days the levels hold)
  goes through the levels again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import amqp

from ...exceptions import BrokerUnavailable
from ..results import ResultBackend, StoreBehind
from ..transport import Delivery, ResultWrite, TransportConsumer
from .connection import link_errors, mapped_errors
from .topology import DELIVERIES_HEADER, DUE_HEADER, conveyor_priority

if TYPE_CHECKING:
    from .transport import AmqpTransport

__all__ = ["AmqpConsumer"]

logger = logging.getLogger("conveyor.rabbitmq")

RECONNECT_ON: tuple[type[BaseException], ...] = (*link_errors, BrokerUnavailable)
EARLY_TOLERANCE = 0.005  # seconds: an ETA message this close to due is due
SLICE = 0.25  # seconds a fetch holds the connection lock at a time
# Once a message came, the rest of the broker's burst is taken while frames keep coming
# (a pause this long ends it). After the prefetch window opened (a subscribe, a larger
# basic.qos), the broker needs a round trip to fill it: a fetch that found nothing waits
# at least WINDOW_GRACE, so "what is waiting now" (timeout 0) is answered, not missed.
# The pause is short in the steady state (a round trip must not wait for a burst that
# is not coming) and longer right after the window opened.
ARRIVED = 0.0005
BURST = 0.03
WINDOW_GRACE = 0.05


class AmqpConsumer(TransportConsumer):
    def __init__(
        self,
        transport: AmqpTransport,
        queues: list[str],
        consumer_id: str,
        results: ResultBackend | None = None,
    ) -> None:
        self.transport = transport
        self.consumer_id = consumer_id
        self._results = results.results_link() if isinstance(results, StoreBehind) else None
        self.carries_results = self._results is not None
        self._waiting: list[Delivery] = []  # acks held until their results are confirmed
        self._queues = queues
        self._closed = False
        self._prefetch = 0
        self._buffer: deque[Delivery] = deque()
        self._redo: list[tuple[amqp.Message, str]] = []
        self._release: list[Delivery] = []
        self._release_lock = threading.Lock()
        self._tag_queue: dict[str, str] = {}
        self._held: set[int] = set()  # tags handed to the loop and not settled yet
        self._message_ids: dict[int, str] = {}
        self._subscribed = -1  # the connection generation basic.consume was sent on
        self._quorum = transport.queue_type == "quorum"
        self._link = transport.open_channel(give_up=self._is_closed)
        with self._link.lock, mapped_errors(transport.settings):
            self._link.channel()  # connect now: a bad URL fails here, not in the loop

    def _is_closed(self) -> bool:
        return self._closed

    # subscribing ---------------------------------------------------------------------
    def _subscribe(self, channel: amqp.Channel, prefetch: int) -> None:
        """On the first fetch of every connection: qos, then basic.consume on each
        queue (never before the first fetch: until then the prefetch is unknown)."""
        self._buffer.clear()  # deliveries of the lost connection went back to the queue
        self._redo.clear()
        self._held.clear()
        self._message_ids.clear()
        self._prefetch = prefetch
        # Quorum queues refuse a channel-wide (global) prefetch: theirs is per consumer.
        channel.basic_qos(0, prefetch, not self._quorum)
        self._consume_all(channel)
        self._subscribed = self._link.generation

    def _consume_all(self, channel: amqp.Channel) -> None:
        for queue in self._queues:
            self._link.declare_queue(queue)
            tag = channel.basic_consume(
                queue,
                callback=self._on_message,
                arguments={"x-consumer-timeout": self.transport.consumer_timeout},
            )
            self._tag_queue[tag] = queue

    def _on_message(self, message: amqp.Message) -> None:
        info = message.delivery_info
        queue = self._tag_queue.get(info.get("consumer_tag", ""), info.get("routing_key", ""))
        headers: dict[str, Any] = message.properties.get("application_headers") or {}
        due = headers.get(DUE_HEADER)
        if due is not None and float(due) > time.time() + EARLY_TOLERANCE:
            self._redo.append((message, queue))
            return
        message_id = message.properties.get("message_id") or ""
        released = self.transport.released.pop(message_id, None)
        if "x-delivery-count" in headers:  # quorum queue: RabbitMQ counts
            deliveries = int(headers["x-delivery-count"]) + 1
        elif released is not None:
            deliveries = released
        elif info.get("redelivered"):
            self._redo.append((message, queue))  # count it: see the module docstring
            return
        else:
            deliveries = int(headers.get(DELIVERIES_HEADER, 0)) + 1
        self._message_ids[info["delivery_tag"]] = message_id
        self._buffer.append(
            Delivery(
                f"{self._link.generation}.{info['delivery_tag']}",
                bytes(message.body),
                queue,
                conveyor_priority(message.properties.get("priority")),
                deliveries,
            )
        )

    def _send_again(self) -> None:
        """Republish (confirmed) what the callback set aside, then ack the originals."""
        redo, self._redo = self._redo, []
        channel = self._link.channel()
        for message, queue in redo:
            headers = dict(message.properties.get("application_headers") or {})
            due = headers.get(DUE_HEADER)
            early = due is not None and float(due) > time.time() + EARLY_TOLERANCE
            if not early:
                headers.pop(DUE_HEADER, None)
                headers[DELIVERIES_HEADER] = int(headers.get(DELIVERIES_HEADER, 0)) + 1
            self.transport.republish(
                queue,
                bytes(message.body),
                {k: v for k, v in headers.items() if not k.startswith(("x-", "conveyor-after"))
                 or k == DELIVERIES_HEADER},
                int(message.properties.get("priority") or 0),
                due=float(due) if early and due is not None else None,
            )
            channel.basic_ack(message.delivery_info["delivery_tag"])

    # the consuming loop's calls ----------------------------------------------------------
    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        idle = False
        while True:
            if self._results is not None:
                # Replies that came are read; once idle, every result is confirmed, so
                # none stays unconfirmed while the loop waits for work.
                self._confirm_results(wait=idle)
            idle = True
            try:
                with self._link.lock:
                    self._settle_releases()
                    opened = self._ensure_prefetch(limit)
                    if opened and not self._buffer:
                        deadline = max(deadline, time.monotonic() + WINDOW_GRACE)
                    if not self._buffer:
                        self._link.drain(min(max(deadline - time.monotonic(), 0.0), SLICE))
                    burst = BURST if opened else ARRIVED
                    while self._buffer and len(self._buffer) < limit and self._link.drain(burst):
                        pass  # the rest of the burst
                    if self._redo:
                        self._send_again()
            except RECONNECT_ON as exc:
                if self._closed:
                    return []
                self._link.lost(exc)
            if self._buffer or time.monotonic() >= deadline or self._closed:
                with self._link.lock:  # the heartbeat thread may be dispatching
                    return self._hand_out(limit)

    def _hand_out(self, limit: int) -> list[Delivery]:
        out = [self._buffer.popleft() for _ in range(min(limit, len(self._buffer)))]
        generation = self._link.generation
        for delivery in out:
            tag = self._current(delivery)
            if tag is not None and int(delivery.tag.partition(".")[0]) == generation:
                self._held.add(tag)
        return out

    def _ensure_prefetch(self, limit: int) -> bool:
        """Prefetch = the deliveries the loop holds + the ``limit`` it asks for; True
        when the window just opened wider (the broker has more to send)."""
        channel = self._link.channel()
        if self._subscribed != self._link.generation:
            self._subscribe(channel, max(limit, 1))
            return True
        if self._quorum:
            return self._widen_quorum(channel, limit)
        wanted = len(self._held) + max(limit, 1)
        if wanted == self._prefetch:
            return False
        wider = wanted > self._prefetch
        self._prefetch = wanted
        channel.basic_qos(0, wanted, True)
        return wider

    def _widen_quorum(self, channel: amqp.Channel, limit: int) -> bool:
        """A per-consumer prefetch binds only consumers made after it: to take a larger
        batch, consume again (unacked deliveries stay valid on the channel)."""
        if limit <= self._prefetch:
            return False
        for tag in list(self._tag_queue):
            channel.basic_cancel(tag)
        self._tag_queue.clear()
        self._prefetch = limit
        channel.basic_qos(0, limit, False)
        self._consume_all(channel)
        return True

    def _current(self, delivery: Delivery) -> int | None:
        """The AMQP delivery tag, or None when it belongs to a connection that died
        (lost, or replaced since): its message already went back to the queue."""
        generation, _, tag = delivery.tag.partition(".")
        if not self._link.is_open or int(generation) != self._link.generation:
            return None
        return int(tag)

    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        """basic.ack (no reply in AMQP: on its way when this returns). ``result`` (only
        when :attr:`carries_results`) is written on the results link first; when that
        link cannot confirm its earlier writes the ack waits (``_waiting``)."""
        results = self._results
        if (
            result is not None
            and results is not None
            and (not results.send(result) or self._waiting)
        ):
            self._waiting.append(delivery)
            return
        self._ack_now(delivery)

    def store(self, result: ResultWrite) -> bool:
        """An interim state, behind the acks (nothing waits for its reply)."""
        if self._results is None:
            return False
        self._results.send(result)
        return True

    def _confirm_results(self, wait: bool) -> None:
        """Read the results link's replies (all of them with ``wait``, or when acks
        wait for them), then send the acks that waited. Raises BrokerUnavailable while
        the result backend is unreachable: the loop backs off and flushes again."""
        assert self._results is not None
        self._results.confirm(wait or bool(self._waiting))
        waiting, self._waiting = self._waiting, []
        for delivery in waiting:
            self._ack_now(delivery)

    def _ack_now(self, delivery: Delivery) -> None:
        with self._link.lock:
            tag = self._current(delivery)
            if tag is None:
                logger.warning(
                    "task message %s came back to its queue when the connection to "
                    "RabbitMQ was lost; it will run again", delivery.tag,
                )
                return
            self._held.discard(tag)
            self._message_ids.pop(tag, None)
            try:
                self._link.channel().basic_ack(tag)
            except link_errors as exc:
                self._link.lost(exc)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give unstarted messages back to the front of their queue (basic.reject with
        requeue). The message id is remembered so the return is not counted as a
        delivery (a worker in another process counts it once more: see the module
        docstring)."""
        with self._link.lock:
            try:
                for delivery in deliveries:
                    tag = self._current(delivery)
                    if tag is None or tag not in self._held:
                        continue  # went back with its connection, or already settled
                    self._held.discard(tag)
                    message_id = self._message_ids.pop(tag, "")
                    if message_id:
                        self.transport.released[message_id] = delivery.deliveries
                    self._link.channel().basic_reject(tag, requeue=True)
            except link_errors as exc:
                self._link.lost(exc)

    def release_later(self, deliveries: Sequence[Delivery]) -> None:
        with self._release_lock:
            self._release.extend(deliveries)

    def _settle_releases(self) -> None:
        with self._release_lock:
            pending, self._release = self._release, []
        if pending:
            self.release(pending)

    def recover(self, known_tags: set[str]) -> int:
        """Nothing to do: RabbitMQ gave back every unacked delivery of the lost
        connection when it closed."""
        return 0

    def flush(self) -> None:
        """Confirm every result, send the acks that waited for them, then a round trip
        on the channel: acks sent before it are applied after it."""
        if self._results is not None:
            self._confirm_results(wait=True)
        with self._link.lock:
            try:
                self._link.channel().basic_qos(0, self._prefetch, not self._quorum)
            except link_errors as exc:
                self._link.lost(exc)

    def close(self) -> None:
        """Close the connection: RabbitMQ gives back everything not acked (an ack that
        still waits for its result too: the task runs again, or is acked unrun when its
        result did land, Executor._ended_before)."""
        self._closed = True
        if self._results is not None:
            try:
                self._confirm_results(wait=True)
            except BrokerUnavailable as exc:
                logger.warning(
                    "%d acks not sent: results unconfirmed (%s)", len(self._waiting), exc
                )
            self._results.close()
        self._link.close()
