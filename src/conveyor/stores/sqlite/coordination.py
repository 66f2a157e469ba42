"""Coordination on SQLite: beat's leader lease and schedule state, unique sends, the
shared rate limiter, concurrency slots, revocations, the worker registry and dead
letters. Each step is one transaction on the tables listed under "Scheduling and flow
control" in ``database.py``. Time is this machine's clock, which every process using an
SQLite file shares.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..coordination import Coordinator, DeadLetter, Revocations
from ..eventlog import EventLog, EventLogStore
from ..mailbox import Mailbox, MailboxStore
from ..transport import priority_level
from .database import Database
from .doorbell import ring

if TYPE_CHECKING:
    import sqlite3

    from ..transport import Transport
    from .transport import SQLiteTransport


__all__ = ["SQLiteCoordinator"]

_HOLD_LEASE = """
INSERT INTO leases (name, owner, expires) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
WHERE leases.owner = excluded.owner OR leases.expires <= ?4
"""
_RENEW = """
INSERT INTO consumers (id, expires) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET expires = excluded.expires
"""
_STALE_SLOTS = """
DELETE FROM slots WHERE key = ?1 AND (
    NOT EXISTS (SELECT 1 FROM consumers c WHERE c.id = slots.consumer AND c.expires > ?2)
    OR (?3 = 1 AND slots.tag != '' AND NOT EXISTS (
        SELECT 1 FROM messages m WHERE m.id = CAST(slots.tag AS INTEGER)
        AND m.owner = slots.consumer))
)
"""
# A deferred message keeps its reserved rate slot this long after it was due.
_HOLD_GRACE = 60.0
_SWEEP_EVERY = 10.0


class SQLiteCoordinator(Coordinator, MailboxStore, EventLogStore):
    """Every coordination interface on one SQLite file.

    ``transport`` is the SQLite transport on the same file when this coordinator was
    made by it (the default): then unique sends queue in the same transaction, and
    slots check that their delivery is still leased. Without it the coordinator stands
    apart and keeps its own consumer leases for slots (:meth:`renew_holders`)."""

    def __init__(
        self,
        url: str,
        *,
        db: Database | None = None,
        transport: SQLiteTransport | None = None,
    ) -> None:
        self.url = url
        self.db = db if db is not None else Database(url)
        self._owns_db = db is None
        self._transport = transport
        self._next_sweep = 0.0

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
    def _claim(self, conn: sqlite3.Connection, key: str, task_id: str, ttl: float) -> str | None:
        now = time.time()
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
        return None

    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        with self.db.write() as held:
            return self._claim(held.conn, key, task_id, ttl)

    def drop_unique(self, key: str, task_id: str) -> None:
        self.db.execute("DELETE FROM unique_keys WHERE key = ? AND task_id = ?", (key, task_id))

    def publish_unique(
        self,
        transport: Transport,
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
        mine = self._transport
        if mine is None or transport is not mine:  # apart: claim, then publish over there
            return super().publish_unique(
                transport, queue, body, key=key, task_id=task_id, ttl=ttl,
                priority=priority, countdown=countdown, eta=eta,
            )  # fmt: skip
        level = priority_level(priority)
        with self.db.write() as held:  # the claim and the message commit together
            first = self._claim(held.conn, key, task_id, ttl)
            if first is not None:
                return first
            addresses = mine.insert_message(held.conn, queue, level, body, countdown, eta)
        if addresses:
            ring(addresses)
        return None

    # rate limits ------------------------------------------------------------------------
    def acquire_rate(self, name: str, per_second: float, reservation: str) -> float:
        interval = 1.0 / per_second
        with self.db.write() as held:
            # Read the clock holding the write lock: a wait for the lock (or the first
            # connect) must not make a later caller's "now" look earlier than ours.
            now = time.time()
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
                in_flight_here = 1 if self._transport is not None else 0
                conn.execute(_STALE_SLOTS, (key, time.time(), in_flight_here))
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

    def renew_holders(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        if self._transport is not None or not consumer_ids:
            return  # same file: the transport's lease rows are the holders' leases
        expires = time.time() + lease_seconds
        with self.db.write() as held:
            held.conn.executemany(_RENEW, [(cid, expires) for cid in consumer_ids])

    # revocations ------------------------------------------------------------------------
    def revoke(self, task_ids: Sequence[str], ttl: float, terminate: str | None = None) -> None:
        if not task_ids:
            return
        now = time.time()
        with self.db.write() as held:
            conn = held.conn
            conn.executemany(
                "INSERT INTO revoked (task_id, expires, signal) VALUES (?, ?, ?) "
                "ON CONFLICT (task_id) DO UPDATE SET expires = excluded.expires, "
                "signal = excluded.signal",
                [(task_id, now + ttl, terminate) for task_id in task_ids],
            )
            conn.execute("DELETE FROM revoked WHERE expires <= ?", (now,))
            conn.execute(
                "INSERT INTO counters (name, value) VALUES ('revoked', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1"
            )

    def revocations(self, known_version: int) -> Revocations | None:
        rows = self.db.read("SELECT value FROM counters WHERE name = 'revoked'")
        version = int(rows[0][0]) if rows else 0
        if version == known_version:
            return None
        live = self.db.read("SELECT task_id, signal FROM revoked WHERE expires > ?", (time.time(),))
        return Revocations(
            version,
            frozenset(row[0] for row in live),
            {row[0]: row[1] for row in live if row[1]},
        )

    # the worker registry --------------------------------------------------------------
    def announce_worker(self, name: str, info: dict[str, Any], ttl: float) -> None:
        self.db.execute(
            "INSERT INTO workers (name, info, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET info = excluded.info, expires = excluded.expires",
            (name, json.dumps(info), time.time() + ttl),
        )

    def retire_worker(self, name: str) -> None:
        self.db.execute("DELETE FROM workers WHERE name = ?", (name,))

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        rows = self.db.read("SELECT info, expires FROM workers ORDER BY name")
        if any(expires <= now for _, expires in rows):
            self.db.execute("DELETE FROM workers WHERE expires <= ?", (now,))
        return [json.loads(info) for info, expires in rows if expires > now]

    # dead letters -----------------------------------------------------------------------
    def dead_letter(self, body: bytes, queue: str, reason: str) -> None:
        self.db.execute(
            "INSERT INTO dead_letters (id, queue, reason, time, body) VALUES (?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, queue, reason, time.time(), body),
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.db.read(
            "SELECT id, queue, reason, time, body FROM dead_letters "
            "ORDER BY time DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [DeadLetter(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def dead_letter_by_id(self, letter_id: str) -> DeadLetter | None:
        rows = self.db.read(
            "SELECT id, queue, reason, time, body FROM dead_letters WHERE id = ?", (letter_id,)
        )
        return (
            DeadLetter(rows[0][0], rows[0][1], rows[0][2], rows[0][3], bytes(rows[0][4]))
            if rows
            else None
        )

    def remove_dead_letters(self, letter_ids: Sequence[str] | None = None) -> int:
        if letter_ids is None:
            return self.db.execute("DELETE FROM dead_letters")
        if not letter_ids:
            return 0
        marks = ", ".join("?" * len(letter_ids))
        return self.db.execute(f"DELETE FROM dead_letters WHERE id IN ({marks})", tuple(letter_ids))

    def close(self) -> None:
        if self._owns_db:
            self.db.close()

    # housekeeping -----------------------------------------------------------------------
    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Drop expired idempotency keys and rate holds, now and then."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY
        conn.execute("DELETE FROM unique_keys WHERE expires <= ?", (now,))
        conn.execute("DELETE FROM rate_holds WHERE expires <= ?", (now,))

    # capabilities beside the interface (stores/mailbox.py, eventlog.py, probe.py) ----
    def control_mailbox(self) -> Mailbox:
        from .mailbox import SQLiteMailbox

        return SQLiteMailbox(self)

    def event_log(self) -> EventLog:
        from .eventlog import SQLiteEventLog

        return SQLiteEventLog(self)
