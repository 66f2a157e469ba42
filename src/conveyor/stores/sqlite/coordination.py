"""Scheduling and flow control on SQLite: beat's leader lease and schedule state, unique
sends, the shared rate limiter, concurrency slots and deferral. Mixed into
:class:`~conveyor.stores.sqlite.transport.SQLiteBroker`; each step is one transaction on the
tables listed under "Scheduling and flow control" in ``_sqlite.py``. Time is this
machine's clock, which every process of an SQLite broker shares.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..transport import Delivery, priority_level
from .database import TAKE_WAITERS
from .doorbell import ring

if TYPE_CHECKING:
    import sqlite3

    from .database import Database

__all__ = ["SQLiteFlowControl"]

_HOLD_LEASE = """
INSERT INTO leases (name, owner, expires) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
WHERE leases.owner = excluded.owner OR leases.expires <= ?4
"""
_INSERT = "INSERT INTO messages (queue, priority, due, scheduled, body) VALUES (?, ?, ?, ?, ?)"
_FIRST_DUE = "SELECT min(due) FROM messages WHERE scheduled = 1"
_STALE_SLOTS = """
DELETE FROM slots WHERE key = ?1 AND (
    NOT EXISTS (SELECT 1 FROM consumers c WHERE c.id = slots.consumer AND c.expires > ?2)
    OR (slots.tag != '' AND NOT EXISTS (
        SELECT 1 FROM messages m WHERE m.id = CAST(slots.tag AS INTEGER)
        AND m.owner = slots.consumer))
)
"""
_DEFER = """
UPDATE messages SET owner = NULL, scheduled = 1, due = ?1, deliveries = max(deliveries - 1, 0)
WHERE id = ?2 AND owner = ?3 RETURNING queue
"""
# A deferred message keeps its reserved rate slot this long after it was due.
_HOLD_GRACE = 60.0
_SWEEP_EVERY = 10.0


class SQLiteFlowControl:
    """The flow-control half of the SQLite broker (see the module docstring)."""

    if TYPE_CHECKING:
        db: Database

    _next_sweep = 0.0

    # leases (beat's leader) -----------------------------------------------------------
    def hold_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self.db.write() as held:
            held.conn.execute(_HOLD_LEASE, (name, owner, now + ttl, now))
            row = held.conn.execute("SELECT owner FROM leases WHERE name = ?", (name,)).fetchone()
        return row is not None and row[0] == owner

    def drop_lease(self, name: str, owner: str) -> None:
        self.db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def lease_owner(self, name: str) -> str | None:
        rows = self.db.read(
            "SELECT owner FROM leases WHERE name = ? AND expires > ?", (name, time.time())
        )
        return str(rows[0][0]) if rows else None

    # beat's schedule state --------------------------------------------------------------
    def schedule_state(self, names: Sequence[str]) -> dict[str, float]:
        if not names:
            return {}
        marks = ", ".join("?" * len(names))
        rows = self.db.read(
            f"SELECT name, last FROM schedule_state WHERE name IN ({marks})", tuple(names)
        )
        return {str(name): float(last) for name, last in rows}

    def record_schedule_state(self, ticks: dict[str, float]) -> None:
        if not ticks:
            return
        with self.db.write() as held:
            held.conn.executemany(
                "INSERT INTO schedule_state (name, last) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last = excluded.last",
                list(ticks.items()),
            )

    # unique sends -----------------------------------------------------------------------
    def publish_unique(
        self,
        queue: str,
        body: bytes,
        *,
        key: str,
        task_id: str,
        ttl: float,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> str | None:
        priority = priority_level(priority)
        now = time.time()
        due = now
        if countdown is not None:
            due = now + max(0.0, countdown)
        elif eta is not None:
            due = max(now, eta)
        scheduled = 1 if due > now else 0
        with self.db.write() as held:
            conn = held.conn
            self._sweep(conn, now)
            row = conn.execute(
                "SELECT task_id FROM unique_keys WHERE key = ? AND expires > ?", (key, now)
            ).fetchone()
            if row is not None:
                return str(row[0])
            conn.execute(
                "INSERT OR REPLACE INTO unique_keys (key, task_id, expires) VALUES (?, ?, ?)",
                (key, task_id, now + ttl),
            )
            conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
            wake = not scheduled or _earlier_than_all(conn, due)
            conn.execute(_INSERT, (queue, priority, due, scheduled, body))
            addresses = _take_waiters(conn, queue) if wake else []
        if addresses:
            ring(addresses)
        return None

    # rate limits ------------------------------------------------------------------------
    def acquire_rate(self, name: str, per_second: float, reservation: str) -> float:
        interval = 1.0 / per_second
        now = time.time()
        with self.db.write() as held:
            conn = held.conn
            kept = conn.execute(
                "DELETE FROM rate_holds WHERE task_id = ? AND expires > ?", (reservation, now)
            ).rowcount
            if kept:
                return 0.0
            row = conn.execute("SELECT tat FROM rate_state WHERE name = ?", (name,)).fetchone()
            tat = max(float(row[0]) if row is not None else now, now)
            conn.execute(
                "INSERT INTO rate_state (name, tat) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET tat = excluded.tat",
                (name, tat + interval),
            )
            wait = tat - now
            if wait < 0.001:
                return 0.0
            conn.execute(
                "INSERT OR REPLACE INTO rate_holds (task_id, expires) VALUES (?, ?)",
                (reservation, tat + _HOLD_GRACE),
            )
            self._sweep(conn, now)
        return wait

    def set_rate_limit(self, name: str, rate: str | None) -> None:
        if rate is None:
            self.db.execute("DELETE FROM rate_limits WHERE name = ?", (name,))
        else:
            self.db.execute(
                "INSERT INTO rate_limits (name, rate) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET rate = excluded.rate",
                (name, rate),
            )

    def rate_limits(self) -> dict[str, str]:
        return {str(n): str(r) for n, r in self.db.read("SELECT name, rate FROM rate_limits")}

    # concurrency slots ------------------------------------------------------------------
    def acquire_slot(self, key: str, limit: int, consumer_id: str, tag: str) -> bool:
        with self.db.write() as held:
            conn = held.conn
            if conn.execute(
                "SELECT 1 FROM slots WHERE key = ? AND consumer = ? AND tag = ?",
                (key, consumer_id, tag),
            ).fetchone():
                return True
            count = conn.execute("SELECT count(*) FROM slots WHERE key = ?", (key,)).fetchone()
            if count[0] >= limit:
                conn.execute(_STALE_SLOTS, (key, time.time()))
                count = conn.execute("SELECT count(*) FROM slots WHERE key = ?", (key,)).fetchone()
                if count[0] >= limit:
                    return False
            conn.execute(
                "INSERT INTO slots (key, consumer, tag) VALUES (?, ?, ?)", (key, consumer_id, tag)
            )
        return True

    def release_slot(self, key: str, consumer_id: str, tag: str) -> None:
        self.db.execute(
            "DELETE FROM slots WHERE key = ? AND consumer = ? AND tag = ?", (key, consumer_id, tag)
        )

    # deferral ---------------------------------------------------------------------------
    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        due = time.time() + max(0.0, delay)
        with self.db.write() as held:
            conn = held.conn
            wake = _earlier_than_all(conn, due)
            row = conn.execute(_DEFER, (due, int(delivery.tag), consumer_id)).fetchone()
            addresses = _take_waiters(conn, row[0]) if row is not None and wake else []
        if addresses:
            ring(addresses)

    # housekeeping -----------------------------------------------------------------------
    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Drop expired idempotency keys and rate holds, now and then."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY
        conn.execute("DELETE FROM unique_keys WHERE expires <= ?", (now,))
        conn.execute("DELETE FROM rate_holds WHERE expires <= ?", (now,))


def _earlier_than_all(conn: sqlite3.Connection, due: float) -> bool:
    first = conn.execute(_FIRST_DUE).fetchone()[0]
    return first is None or due < first


def _take_waiters(conn: sqlite3.Connection, queue: str) -> list[str]:
    return [row[0] for row in conn.execute(TAKE_WAITERS, ("q:" + queue,))]
