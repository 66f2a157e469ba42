"""The event stream on Redis: one capped stream, ``<p>:events``.

Events are written in batches (a worker's flusher sends what it gathered every 200 ms),
so each stream entry holds a batch: field ``e`` is up to :data:`EVENTS_PER_ENTRY` JSON
lines joined by ``\n``, and its id is ``<number of its last event>-0``, the events
numbered on over the stream's life from the time in microseconds when the stream was
made, so a position saved before Redis lost the stream is never ahead of new events
(``append_events.lua``). An event's id for readers is its number. Measured on the
drain benchmark: a pipeline of one ``XADD`` per event cost ~6.6 µs an event in redis-py
plus ~1 µs in Redis, more than making the event; one entry per batch costs a fraction
of a µs an event on each side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..eventlog import EventLog
from .connection import load_script, text
from .keys import RedisKeys

__all__ = ["EVENTS_PER_ENTRY", "RedisEventLog"]

_PACKAGE = __name__.rsplit(".", 1)[0]

# Events per stream entry: keeps an entry (what a reader fetches at once) near 100 kB.
EVENTS_PER_ENTRY = 256
# Entries a read fetches per round trip.
_ENTRIES_PER_READ = 16


class RedisStore(Protocol):
    """What the event log needs of a store: a transport or coordinator on one Redis or a
    cluster (redis-py's client sends the stream key's commands to its node)."""

    @property
    def client(self) -> Any: ...

    @property
    def keys(self) -> RedisKeys: ...


class RedisEventLog(EventLog):
    def __init__(self, transport: RedisStore) -> None:
        self.client = transport.client
        self.key = transport.keys.events
        # redis-py's script object: EVALSHA, and EVAL again after a SCRIPT FLUSH; on a
        # cluster it goes to the stream key's node.
        self._append = self.client.register_script(
            load_script(_PACKAGE, "append_events").source
        )

    def append(self, records: Sequence[bytes], max_len: int) -> None:
        args: list[Any] = [max_len]
        for start in range(0, len(records), EVENTS_PER_ENTRY):
            chunk = records[start : start + EVENTS_PER_ENTRY]
            args += [len(chunk), b"\n".join(chunk)]
        if len(args) > 1:
            self._append(keys=[self.key], args=args)

    def read(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        # The number of the last event already read (the part before "-" of a position
        # saved by an older conveyor, whose ids were stream ids).
        done = int(after.split("-", 1)[0]) if after else 0
        events: list[tuple[str, bytes]] = []
        while len(events) < limit:
            # The entry holding event done + 1 is the first whose last event is >= it.
            entries: Any = self.client.xrange(
                self.key, min=f"{done + 1}-0", max="+", count=_ENTRIES_PER_READ
            )
            for entry_id, fields in entries:
                last = int(text(entry_id).split("-", 1)[0])
                bodies = bytes(fields[b"e"]).split(b"\n")
                for number, body in enumerate(bodies, last - len(bodies) + 1):
                    if number > done and len(events) < limit:
                        events.append((str(number), body))
                done = int(events[-1][0]) if events else last
            if len(entries) < _ENTRIES_PER_READ:
                break
        return events
