"""The control mailbox on SQLite: two tables of its own, created on first use.

``control_inbox`` holds commands per worker and ``control_replies`` answers per reply id,
each row with an expiry; expired rows are swept when a command is posted. ``take`` first
reads (WAL: a reader never waits for the writer) and takes the write lock only when
there is a command, so a supervisor polling its inbox costs the hot path nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..mailbox import Mailbox

if TYPE_CHECKING:
    from .coordination import SQLiteCoordinator
    from .transport import SQLiteTransport

__all__ = ["SQLiteMailbox"]

_TABLES = (
    """CREATE TABLE IF NOT EXISTS control_inbox (
        id INTEGER PRIMARY KEY, worker TEXT NOT NULL, expires REAL NOT NULL,
        body BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS control_inbox_by_worker ON control_inbox (worker, id)",
    """CREATE TABLE IF NOT EXISTS control_replies (
        id INTEGER PRIMARY KEY, reply TEXT NOT NULL, expires REAL NOT NULL,
        body BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS control_replies_by_reply ON control_replies (reply, id)",
)
_POLL = 0.01  # how often collect() looks for answers


class SQLiteMailbox(Mailbox):
    def __init__(self, broker: SQLiteTransport | SQLiteCoordinator) -> None:
        self.db = broker.db
        for statement in _TABLES:
            self.db.execute(statement)

    def post(self, workers: Sequence[str], command: bytes, ttl: float) -> None:
        now = time.time()
        with self.db.write() as held:
            held.conn.execute("DELETE FROM control_inbox WHERE expires <= ?", (now,))
            held.conn.execute("DELETE FROM control_replies WHERE expires <= ?", (now,))
            held.conn.executemany(
                "INSERT INTO control_inbox (worker, expires, body) VALUES (?, ?, ?)",
                [(worker, now + ttl, command) for worker in workers],
            )

    def take(self, worker: str, limit: int = 16) -> list[bytes]:
        if not self.db.read("SELECT 1 FROM control_inbox WHERE worker = ? LIMIT 1", (worker,)):
            return []
        rows = self.db.execute_returning(
            "DELETE FROM control_inbox WHERE id IN (SELECT id FROM control_inbox "
            "WHERE worker = ? ORDER BY id LIMIT ?) RETURNING id, expires, body",
            (worker, limit),
        )
        now = time.time()
        return [bytes(body) for _, expires, body in sorted(rows) if expires > now]

    def answer(self, reply_id: str, reply: bytes, ttl: float) -> None:
        self.db.execute(
            "INSERT INTO control_replies (reply, expires, body) VALUES (?, ?, ?)",
            (reply_id, time.time() + ttl, reply),
        )

    def collect(self, reply_id: str, expected: int, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.db.read(
                "SELECT body FROM control_replies WHERE reply = ? ORDER BY id", (reply_id,)
            )
            if len(rows) >= expected or time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        self.db.execute("DELETE FROM control_replies WHERE reply = ?", (reply_id,))
        return [bytes(row[0]) for row in rows]

    def held(self, consumer_id: str) -> list[tuple[str, bytes]]:
        rows = self.db.read("SELECT id, body FROM messages WHERE owner = ?", (consumer_id,))
        return [(str(tag), bytes(body)) for tag, body in rows]
