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

if TYPE_CHECKING:
    from .coordination import Coordinator

__all__ = ["EventLog", "event_log_for"]


class EventLog(ABC):
    @abstractmethod
    def append(self, records: Sequence[bytes], max_len: int) -> None:
        """Add events (oldest first), keeping about the newest ``max_len``. Each record
        is one line (JSON, no raw newline): Redis stores a batch as lines."""

    @abstractmethod
    def read(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` events after the id ``after`` (from the oldest kept when
        None), oldest first, each with its id: a decimal number, increasing."""


_LOGS: weakref.WeakKeyDictionary[Transport, EventLog] = weakref.WeakKeyDictionary()


def event_log_for(transport: Transport, coordinator: Coordinator | None = None) -> EventLog:
    """The event stream in ``transport``'s store, or, for a transport that only moves
    messages (amqp://), in ``coordinator``'s store."""
    log = _LOGS.get(transport)
    if log is None:
        log = _LOGS[transport] = _make(transport, coordinator)
    return log


def _beside_coordinator(coordinator: Coordinator | None) -> EventLog | None:
    from .redis.coordination import RedisCoordinator
    from .sqlite.coordination import SQLiteCoordinator

    if isinstance(coordinator, RedisCoordinator):
        from .redis.eventlog import RedisEventLog

        return RedisEventLog(coordinator)
    if isinstance(coordinator, SQLiteCoordinator):
        from .sqlite.eventlog import SQLiteEventLog

        return SQLiteEventLog(coordinator)
    return None


def _make(transport: Transport, coordinator: Coordinator | None) -> EventLog:
    from .memory.transport import MemoryTransport
    from .redis.cluster import RedisClusterTransport
    from .redis.transport import RedisTransport
    from .sqlite.transport import SQLiteTransport

    if isinstance(transport, RedisTransport | RedisClusterTransport):
        from .redis.eventlog import RedisEventLog

        # One stream key: on a cluster it lives in its own slot, same commands.
        return RedisEventLog(transport)  # type: ignore[arg-type]
    if isinstance(transport, SQLiteTransport):
        from .sqlite.eventlog import SQLiteEventLog

        return SQLiteEventLog(transport)
    if isinstance(transport, MemoryTransport):
        from .memory.eventlog import MemoryEventLog

        return MemoryEventLog(transport)
    beside = _beside_coordinator(coordinator)
    if beside is not None:
        return beside
    raise ConfigurationError(f"the broker {transport.url!r} keeps no event stream")
