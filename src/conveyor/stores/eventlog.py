"""The event stream: task and worker events kept by the store, bounded and durable.

A worker with events on (``-E``, ``worker_send_task_events``) appends every event as
JSON; ``conveyor events`` reads them. Unlike Celery's events (a fanout nobody keeps:
a monitor that was not listening sees nothing), these survive restarts of workers and
monitors until ``event_stream_max_len`` newer ones push them out.

    redis    a stream <p>:events, one entry per batch of events (redis/eventlog.py)
    sqlite   an ``events`` table; rows beyond the newest N deleted as it grows
    memory   a bounded deque
    amqp     in the coordinator's store (Redis or SQLite), as the control mailbox
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .transport import Transport
from .urls import masked

if TYPE_CHECKING:
    from .coordination import Coordinator

__all__ = ["EventLog", "EventLogStore", "event_log_for"]


class EventLog(ABC):
    @abstractmethod
    def append(self, records: Sequence[bytes], max_len: int) -> None:
        """Add events (oldest first), keeping about the newest ``max_len``. Each record
        is one line (JSON, no raw newline): Redis stores a batch as lines."""

    @abstractmethod
    def read(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` events after the id ``after`` (from the oldest kept when
        None), oldest first, each with its id: a decimal number, increasing."""


class EventLogStore(ABC):
    """The capability of a store that keeps the event stream (redis, sqlite, memory, and
    the redis and sqlite coordinators); a transport without it (amqp) pairs with a
    coordinator that has it. A new store plugs in by offering it."""

    @abstractmethod
    def event_log(self) -> EventLog:
        """A new event log on this store (:func:`event_log_for` keeps one per broker)."""


_LOGS: weakref.WeakKeyDictionary[Transport, EventLog] = weakref.WeakKeyDictionary()


def event_log_for(transport: Transport, coordinator: Coordinator | None = None) -> EventLog:
    """The event stream in ``transport``'s store, or, for a transport that only moves
    messages (amqp://), in ``coordinator``'s store."""
    log = _LOGS.get(transport)
    if log is None:
        log = _LOGS[transport] = _make(transport, coordinator)
    return log


def _make(transport: Transport, coordinator: Coordinator | None) -> EventLog:
    for store in (transport, coordinator):
        if isinstance(store, EventLogStore):
            return store.event_log()
    raise ConfigurationError(
        f"the broker {masked(transport.url)!r} keeps no event stream, nor does its "
        f"coordinator ({type(coordinator).__name__}): set coordinator_url to a redis:// "
        "or sqlite:// store"
    )
