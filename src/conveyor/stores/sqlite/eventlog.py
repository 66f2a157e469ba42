"""The event stream on SQLite: an ``events`` table of its own; rows beyond the newest
``max_len`` are deleted every so often as it grows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..eventlog import EventLog

if TYPE_CHECKING:
    from .coordination import SQLiteCoordinator
    from .transport import SQLiteTransport

__all__ = ["SQLiteEventLog"]

_TRIM_EVERY = 256  # appends between trims


class SQLiteEventLog(EventLog):
    def __init__(self, transport: SQLiteTransport | SQLiteCoordinator) -> None:
        self.db = transport.db
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body BLOB NOT NULL)"
        )
        self._since_trim = _TRIM_EVERY

    def append(self, records: Sequence[bytes], max_len: int) -> None:
        with self.db.write() as held:
            held.conn.executemany(
                "INSERT INTO events (body) VALUES (?)", [(record,) for record in records]
            )
            self._since_trim += len(records)
            if self._since_trim >= _TRIM_EVERY:
                self._since_trim = 0
                held.conn.execute(
                    "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?",
                    (max_len,),
                )

    def read(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        rows = self.db.read(
            "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (int(after) if after else 0, limit),
        )
        return [(str(event_id), bytes(body)) for event_id, body in rows]
