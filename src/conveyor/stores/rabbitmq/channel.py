"""One AMQP connection and channel, guarded by a lock, kept alive by heartbeats.

py-amqp connections are not thread-safe and do nothing in the background, so a worker
whose thread runs a 3-hour task would miss the broker's heartbeats and lose its
connection (and RabbitMQ would redeliver the task: the duplicate run Celery users see,
celery#5037). A small thread per connection reads pending frames and sends heartbeats,
under the same lock as every other use of the connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import amqp
import amqp.exceptions

from .connection import (
    CONSUMER_TIMEOUT_HINT,
    AmqpSettings,
    connect,
    connection_errors,
    link_errors,
    server_version,
)
from .topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DELAY_LEVELS,
    DELAY_TOPOLOGY_MARKER,
    DELIVER,
    DELIVERY_EXCHANGE,
    QUEUE_HEADER,
    after_exchange,
    after_header,
    delay_queue,
    work_queue_arguments,
)

__all__ = ["AmqpChannel"]

logger = logging.getLogger("conveyor.rabbitmq")

# py-amqp asks the socket for exactly the bytes of the frame part it reads next: two
# recv() calls a frame, three frames a delivery. Asking for up to READ_AHEAD bytes
# fills its read buffer (which it already keeps between reads) with a burst of
# deliveries in one call. 0: py-amqp's own reads.
READ_AHEAD = 4096


def _read_ahead(connection: amqp.Connection) -> None:
    transport: Any = connection.transport
    recv = getattr(transport, "_quick_recv", None)  # py-amqp 5.x's transports
    if READ_AHEAD and recv is not None:
        transport._quick_recv = lambda n: recv(max(n, READ_AHEAD))


class AmqpChannel:
    """A connection with one channel, reopened on demand after a failure.

    ``generation`` counts the connections made: a delivery tag from an older one is
    void (its message went back to the queue when that connection died)."""

    def __init__(
        self,
        settings: AmqpSettings,
        *,
        queue_type: str,
        delivery_limit: int | None,
        on_open: Callable[[amqp.Channel], None] | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.queue_type = queue_type
        self.delivery_limit = delivery_limit
        self.lock = threading.RLock()
        self.generation = 0
        self.version: tuple[int, ...] = ()
        self._connection: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._declared: set[str] = set()
        self._delays_declared = False
        self._on_open = on_open
        self._give_up = give_up
        self._closed = threading.Event()
        self._beat: threading.Thread | None = None

    # opening and losing the connection ----------------------------------------------
    def channel(self) -> amqp.Channel:
        """The open channel, connecting first when there is none. Call with the lock."""
        if self._channel is not None:
            return self._channel
        connection = connect(self.settings, first=self.generation == 0, give_up=self._give_up)
        try:
            _read_ahead(connection)
            channel = connection.channel()
            self._connection, self._channel = connection, channel
            self.generation += 1
            self.version = server_version(connection)
            self._declared.clear()
            self._delays_declared = False
            if self._on_open is not None:
                self._on_open(channel)
        except BaseException:
            self._connection = self._channel = None
            self._drop(connection)
            raise
        self._start_heartbeats()
        return channel

    @property
    def is_open(self) -> bool:
        return self._channel is not None

    @property
    def connection(self) -> amqp.Connection:
        self.channel()
        assert self._connection is not None
        return self._connection

    def lost(self, error: BaseException) -> None:
        """Forget a connection that failed; the next use opens a new one."""
        if "acknowledgement" in str(error) and "timed out" in str(error):
            logger.error("%s: %s", CONSUMER_TIMEOUT_HINT, error)
        else:
            logger.warning("RabbitMQ connection to %s lost: %s", self.settings.masked_url, error)
        with self.lock:
            connection, self._connection, self._channel = self._connection, None, None
            if connection is not None:
                self._drop(connection)

    @staticmethod
    def _drop(connection: amqp.Connection) -> None:
        try:
            connection.collect()
        except Exception:  # a connection already broken has nothing left to free
            logger.debug("collecting a broken connection failed", exc_info=True)

    def drain(self, timeout: float) -> bool:
        """Read and dispatch frames for up to ``timeout`` seconds; False when none came.
        Call with the lock."""
        try:
            # Never 0: a non-blocking socket raises EAGAIN, which py-amqp passes on as
            # an OSError indistinguishable from a lost connection.
            self.connection.drain_events(timeout=max(timeout, 0.0005))
        except TimeoutError:
            return False
        return True

    # heartbeats --------------------------------------------------------------------
    def _start_heartbeats(self) -> None:
        if self.settings.heartbeat <= 0 or self._beat is not None:
            return
        self._beat = threading.Thread(
            target=self._heartbeats, name="conveyor-amqp-heartbeat", daemon=True
        )
        self._beat.start()

    def _heartbeats(self) -> None:
        interval = max(self.settings.heartbeat / 4, 0.05)
        while not self._closed.wait(interval):
            if not self.lock.acquire(timeout=interval):
                continue  # the owner is using the connection, which reads it too
            try:
                if self._connection is not None:
                    self.drain(0)
                    self._connection.heartbeat_tick()
            except link_errors as exc:
                self.lost(exc)
            finally:
                self.lock.release()

    # declarations ------------------------------------------------------------------
    def declare_queue(self, name: str) -> None:
        """Declare a work queue once per connection (durable, with its arguments) and
        bind it to the delivery exchange, so delayed messages find it when due."""
        if name in self._declared:
            return
        channel = self.channel()
        if name == DEAD_LETTER_QUEUE:
            self._declare_dead_letters(channel)
            return
        self._declare_dead_letters(channel)
        channel.queue_declare(
            name,
            durable=True,
            auto_delete=False,
            arguments=work_queue_arguments(self.queue_type, self.delivery_limit),
        )
        channel.exchange_declare(DELIVERY_EXCHANGE, "headers", durable=True, auto_delete=False)
        channel.queue_bind(
            name, DELIVERY_EXCHANGE, arguments={"x-match": "all", QUEUE_HEADER: name}
        )
        self._declared.add(name)

    def _declare_dead_letters(self, channel: amqp.Channel) -> None:
        if DEAD_LETTER_QUEUE in self._declared:
            return
        channel.exchange_declare(DEAD_LETTER_EXCHANGE, "fanout", durable=True, auto_delete=False)
        channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, auto_delete=False)
        channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, "")
        self._declared.add(DEAD_LETTER_QUEUE)

    def declare_delays(self) -> None:
        """Declare the delay levels, unless the marker exchange (declared last) says
        they exist. Bindings go without waiting for replies (nowait), then one round
        trip confirms them all."""
        if self._delays_declared:
            return
        channel = self.channel()
        try:
            channel.exchange_declare(DELAY_TOPOLOGY_MARKER, "fanout", passive=True)
        except amqp.exceptions.NotFound:
            channel = self._reopen_channel()
            self._declare_delay_levels(channel)
        self._delays_declared = True

    def _reopen_channel(self) -> amqp.Channel:
        """A failed passive declare closes the channel: open another on the connection."""
        assert self._connection is not None
        channel = self._connection.channel()
        self._channel = channel
        if self._on_open is not None:
            self._on_open(channel)
        return channel

    @staticmethod
    def _declare_delay_levels(channel: amqp.Channel) -> None:
        durable: dict[str, Any] = {"durable": True, "auto_delete": False}
        channel.exchange_declare(DELIVERY_EXCHANGE, "headers", **durable)
        for level in range(DELAY_LEVELS):
            channel.exchange_declare(after_exchange(level), "headers", nowait=True, **durable)
            arguments = {"x-message-ttl": 2**level, "x-dead-letter-exchange": after_exchange(level)}
            channel.queue_declare(delay_queue(level), nowait=True, arguments=arguments,
                                  **durable)
        for level in range(DELAY_LEVELS):
            header = after_header(level)
            for lower in range(level):
                channel.queue_bind(delay_queue(lower), after_exchange(level), nowait=True,
                                   arguments={"x-match": "all", header: str(lower)})
            channel.exchange_bind(DELIVERY_EXCHANGE, after_exchange(level), nowait=True,
                                  arguments={"x-match": "all", header: DELIVER})
        channel.exchange_declare(DELAY_TOPOLOGY_MARKER, "fanout", **durable)

    def close(self) -> None:
        self._closed.set()
        with self.lock:
            connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.close()
            except connection_errors:
                self._drop(connection)
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=2)
