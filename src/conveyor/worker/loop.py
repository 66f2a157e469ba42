"""The consume loop: fetch a batch, run it attempt by attempt, ack each as it ends.

One loop runs in each prefork child, in each thread of the threads pool, and in the
solo pool's main thread; it owns one consumer (a broker connection and its lease). Each
delivery becomes an :class:`~conveyor.worker.attempt.Attempt`, held in ``running``
while it is there, where the keeper reads it. Acks (with results, when the backend
lives in the broker) are sent the moment a task ends without waiting for Redis to
answer, so a worker killed later never runs a finished task again and no task waits on
a round trip.

Prefetch is bounded (``prefetch_multiplier`` messages per loop), and the keeper gives
the unstarted ones back when the running task turns out slow, so one long task never
holds quick ones hostage behind it (promise 8).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..exceptions import (
    BrokerUnavailable,
    SoftTimeLimitExceeded,
    TaskRevokedError,
    TimeLimitExceeded,
)
from ..stores.transport import Delivery, ResultWrite, TransportConsumer
from .attempt import Attempt
from .executor import AttemptWatcher, Executor
from .hooks import WorkerHooks
from .revocations import RevocationCache

if TYPE_CHECKING:
    from ..app import Conveyor

# Under a backlog a loop leases up to this many times its prefetch per round trip.
BACKLOG_FACTOR = 4

# Raised into a thread by the keeper; may land between tasks in a rare race.
LATE_INTERRUPTIONS = (SoftTimeLimitExceeded, TimeLimitExceeded, TaskRevokedError)


class FetchInterrupted(Exception):
    """Raised by a shutdown signal handler into a loop blocked in fetch."""


__all__ = ["ConsumeLoop", "LoopConfig"]

logger = logging.getLogger("conveyor.worker")

# Errors that mean "the broker is unreachable for now": wait and try again. Every store
# maps its client's errors to this one class (stores/redis/connection.py, SQLite's
# Database._retry), so nothing here knows a client library.
TRANSIENT: tuple[type[BaseException], ...] = (BrokerUnavailable,)


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """What every consume loop of a pool shares (each adds its own consumer id)."""

    queues: Sequence[str]
    hostname: str
    hooks: WorkerHooks
    stop: threading.Event
    prefetch: int = 4
    # Under a backlog a loop leases up to this many times its prefetch per fetch (1: never
    # more than the prefetch, for the green pools' one-message loops).
    backlog_factor: int = BACKLOG_FACTOR
    max_tasks: int | None = None  # then the loop ends (a prefork child is replaced)
    revocations: RevocationCache = field(default_factory=RevocationCache)
    # Told when a task body starts and ends: the pool's SIGALRM, a prefork child's slot.
    watchers: Sequence[AttemptWatcher] = ()


class ConsumeLoop:
    def __init__(
        self,
        app: Conveyor,
        config: LoopConfig,
        consumer_id: str,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.consumer_id = consumer_id
        self.stop = config.stop
        self.prefetch = max(1, config.prefetch)
        self._batch = self.prefetch
        self.max_tasks = config.max_tasks
        self.in_fetch = False  # idle in a blocking fetch (a shutdown may interrupt it)
        self.buffer: deque[Delivery] = deque()
        # The attempts this loop holds now, by delivery tag (read by the keeper).
        self.running: dict[str, Attempt] = {}
        self.tasks_run = 0
        self.lease_seconds = float(app.conf.worker_lease_seconds)
        self.on_ready = on_ready
        self.thread_id = 0  # the thread the loop runs on (where its attempts run)
        self._consumer: TransportConsumer | None = None

    # run ------------------------------------------------------------------------------
    def run(self) -> None:
        """Consume until ``stop`` is set or ``max_tasks`` ran; then give back what never
        started."""
        backoff = 0.1
        self.thread_id = threading.get_ident()
        try:
            while not self._done():
                try:
                    self._cycle()
                    backoff = 0.1
                    self._connected = True
                except FetchInterrupted:
                    # Shutdown arrived while idle in a fetch: leave now rather than when
                    # the fetch times out. Its connection is mid-command, so it goes; a
                    # lease it may have taken is given back by the supervisor's reclaim.
                    self._consumer = None
                except LATE_INTERRUPTIONS as exc:
                    # A limit or terminate raised from another thread landed just after
                    # its task ended: hand back any lease this loop lost track of.
                    logger.warning(
                        "%s arrived after its task ended; recovering", type(exc).__name__
                    )
                    if self._consumer is not None:
                        self._consumer.recover(self._known_tags())
                except TRANSIENT as exc:
                    # A worker that never got through is waiting, not reconnecting. The
                    # store may be the result backend (results written behind AMQP acks).
                    store = getattr(exc, "role", "the broker").removeprefix("the ")
                    lost, waiting = f"{store} connection lost", f"waiting for the {store}"
                    state = lost if self._connected else waiting
                    logger.warning("%s (%s); retrying in %.1fs", state, exc, backoff)
                    # Keep the consumer: its unconfirmed acks are sent again when it
                    # reconnects; only then are unknown leases given back (_cycle).
                    self._recover = True
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            self._shutdown()

    retired = False  # let go by a shrinking pool: ends after its running task

    def retire(self) -> None:
        """End after the running task, giving back what never started (pool_shrink)."""
        self.retired = True

    def _done(self) -> bool:
        if self.stop.is_set() or self.retired:
            return True
        return self.max_tasks is not None and self.tasks_run >= self.max_tasks

    def _open(self) -> TransportConsumer:
        if self._consumer is None:
            app = self.app
            consumer = app.broker.consumer(
                list(self.config.queues), self.consumer_id, self.lease_seconds, results=app.backend
            )
            try:
                recovered = consumer.recover(self._known_tags())
            except BaseException:
                # Not reached (yet): keep nothing half made, so the next try starts over.
                with contextlib.suppress(Exception):
                    consumer.close()
                raise
            self._consumer = consumer
            if recovered:
                logger.warning("gave back %d deliveries whose fetch reply was lost", recovered)
            self._executor = self._make_executor(consumer)
            # Tracking STARTED also records RECEIVED when a message is leased (Celery only
            # emits it as an event; stored, a dashboard-less user can see it too).
            self._track_received = bool(app.conf.task_track_started)
            if self.on_ready is not None:
                self.on_ready()
                self.on_ready = None
        return self._consumer

    def _make_executor(self, consumer: TransportConsumer) -> Executor:
        """The executor of this loop's attempts (the asyncio pool's feeder gives it a
        consumer that the event loop's thread may use too)."""
        config = self.config
        return Executor(
            self.app,
            consumer,
            self.consumer_id,
            config.hostname,
            config.hooks,
            config.revocations,
            config.watchers,
        )

    def _known_tags(self) -> set[str]:
        known = {d.tag for d in self.buffer}
        known.update(self.running)
        return known

    def _drop_consumer(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):  # the connection is already broken
                self._consumer.close()
            self._consumer = None

    _recover = False
    _connected = False  # a cycle went through at least once
    _reopen = False

    def reopen(self) -> None:
        """Consume ``config.queues`` anew from the next fetch on (they changed:
        ``app.control.add_consumer``)."""
        self._reopen = True

    def _cycle(self) -> None:
        if self._reopen and not self.buffer and self._consumer is not None:
            self._reopen = False
            self._consumer.flush()
            self._drop_consumer()
        consumer = self._open()
        if self._recover:
            consumer.flush()  # reconnect; resend acks and results whose reply was lost
            recovered = consumer.recover(self._known_tags())
            self._recover = False
            logger.warning(
                "%s%s",
                "broker connection restored" if self._connected else "connected to the broker",
                f"; gave back {recovered} leases whose fetch reply was lost" if recovered else "",
            )
        if not self.buffer:
            self.in_fetch = True
            try:
                deliveries = consumer.fetch(self._batch, timeout=1.0)
            finally:
                self.in_fetch = False
            # A full batch means a backlog: lease more per round trip next time, up to
            # BACKLOG_FACTOR x prefetch (still bounded; the keeper gives back the rest if
            # a slow task holds them). A partial batch goes back to the plain prefetch.
            full = len(deliveries) >= self._batch
            self._batch = (
                min(self._batch * 2, self.prefetch * self.config.backlog_factor)
                if full
                else self.prefetch
            )
            self.buffer.extend(deliveries)
            if deliveries and self._track_received:
                for write in self._executor.received(deliveries):
                    self._store(write)
            return
        try:
            delivery = self.buffer.popleft()
        except IndexError:  # the keeper gave the rest back
            return
        attempt = Attempt(delivery, self._executor)
        attempt.runner = self.thread_id
        running = self.running
        running[delivery.tag] = attempt
        try:
            if attempt.prepare():
                attempt.execute()
            attempt.settle()
        finally:
            del running[delivery.tag]
            self.tasks_run += 1

    def _store(self, write: ResultWrite) -> None:
        consumer = self._consumer
        if consumer is None or not consumer.store(write):
            self.app.backend.store(write.task_id, write.payload, write.final)

    # shutdown -----------------------------------------------------------------------
    def give_back(self) -> list[Delivery]:
        """Take the unstarted deliveries out of the buffer (any thread may call this)."""
        taken: list[Delivery] = []
        while True:
            try:
                taken.append(self.buffer.popleft())
            except IndexError:
                return taken

    def _shutdown(self) -> None:
        unstarted = self.give_back()
        consumer = self._consumer
        try:
            if consumer is not None:
                if unstarted:
                    consumer.release(unstarted)
                consumer.flush()
        except TRANSIENT as exc:
            logger.warning("could not give back %d messages on shutdown: %s", len(unstarted), exc)
        finally:
            self._drop_consumer()
