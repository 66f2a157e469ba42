"""The SQLite broker: the embedded default, for one machine and any number of processes.

Every message is a row of ``messages`` (schema in ``_sqlite.py``). How it moves, each
step one transaction, so no crash can leave it half-done:

    publish   INSERT, ``scheduled = 1`` while its ETA is in the future; ring waiters
    fetch     renew this consumer's lease row; promote due ETAs (``scheduled = 0``);
              UPDATE ... SET owner = <consumer> on the first N waiting rows, RETURNING them
    ack       DELETE the row (and, with a co-located backend, store the result in the
              same transaction: a task is never done without its result, nor the reverse)
    release   owner = NULL: unstarted messages go back with their old due time, so to
              the front of their queue, and their delivery count given back
    reclaim   owner = NULL for every row of a consumer whose lease row expired

Waiting is pushed, not polled: an idle consumer leaves the address of its doorbell (a
Unix datagram socket) in ``waiters``, and whoever publishes to its queue rings it after
committing (see ``_doorbell.py`` for why and how). An ETA is waited for with a timer set
to the earliest due time, so it starts on time without anyone ringing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..coordination import CoordinatingStore, Coordinator
from ..eventlog import EventLog, EventLogStore
from ..mailbox import Mailbox, MailboxStore
from ..probe import Scheduled, ScheduledProbe, WaitingProbe
from ..transport import (
    Delivery,
    LeasedDeliveries,
    QueueStats,
    ResultWrite,
    Transport,
    TransportConsumer,
    priority_level,
)
from .coordination import SQLiteCoordinator
from .database import TAKE_WAITERS, Database
from .doorbell import BACKSTOP, Doorbell, ring

if TYPE_CHECKING:
    import sqlite3

    from ..results import ResultBackend


__all__ = ["SQLiteConsumer", "SQLiteTransport"]

_INSERT = "INSERT INTO messages (queue, priority, due, scheduled, body) VALUES (?, ?, ?, ?, ?)"
_INSERT_ONE = _INSERT + " RETURNING (SELECT count(*) FROM waiters WHERE channel = 'q:' || queue)"
_FIRST_DUE = "SELECT min(due) FROM messages WHERE scheduled = 1"
_RENEW = """
INSERT INTO consumers (id, expires) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET expires = excluded.expires
"""
_PROMOTE = "UPDATE messages SET scheduled = 0 WHERE scheduled = 1 AND due <= ?"
_LEASE = """
UPDATE messages SET owner = ?1, deliveries = deliveries + 1
WHERE id IN (
    SELECT id FROM messages WHERE owner IS NULL AND queue = ?2 AND scheduled = 0
    ORDER BY priority, due, id LIMIT ?3
)
RETURNING id, priority, due, deliveries, body
"""
_WAIT = "INSERT OR IGNORE INTO waiters (channel, address) VALUES (?, ?)"
_ACK = "DELETE FROM messages WHERE id = ? AND owner = ?"
_RELEASE = """
UPDATE messages SET owner = NULL, deliveries = max(deliveries - 1, 0)
WHERE id = ? AND owner = ? RETURNING queue
"""
_RECLAIM = "UPDATE messages SET owner = NULL WHERE owner = ? AND scheduled = 0 RETURNING queue"
_DEFER = """
UPDATE messages SET owner = NULL, scheduled = 1, due = ?1, deliveries = max(deliveries - 1, 0)
WHERE id = ?2 AND owner = ?3 RETURNING queue
"""
_EXPIRED = "SELECT id FROM consumers WHERE expires <= ? LIMIT 50"
# Reclaim at most this many dead consumers per call (as reclaim.lua does).
_RECLAIM_BATCH = 50


def _take_waiters(conn: sqlite3.Connection, queues: Iterable[str]) -> list[str]:
    addresses: list[str] = []
    for queue in queues:
        addresses.extend(row[0] for row in conn.execute(TAKE_WAITERS, ("q:" + queue,)))
    return addresses


class SQLiteTransport(
    Transport, LeasedDeliveries, CoordinatingStore, MailboxStore, EventLogStore, WaitingProbe,
    ScheduledProbe,
):
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``; thread- and
    fork-safe (a connection per thread and process)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Database(url)
        self.location = f"sqlite:{self.db.path}"
        self._coordinator: SQLiteCoordinator | None = None

    def coordination(self) -> Coordinator:
        if self._coordinator is None:
            self._coordinator = SQLiteCoordinator(self.url, db=self.db, transport=self)
        return self._coordinator

    # producing ----------------------------------------------------------------------
    def publish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        level = priority_level(priority)
        now = time.time()
        due = now
        if countdown is not None:
            due = now + max(0.0, countdown)
        elif eta is not None:
            due = max(now, eta)
        scheduled = 1 if due > now else 0
        if len(bodies) == 1 and not scheduled:
            self._publish_one(queue, level, due, bodies[0])
            return
        with self.db.write() as held:
            conn = held.conn
            if queue not in held.queues:
                conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
            # Waiters need waking for a message due now, or for an ETA earlier than
            # every other (they shorten their timer); a million later ETAs wake nobody.
            wake = not scheduled or _earlier_than_all(conn, due)
            if len(bodies) == 1:
                conn.execute(_INSERT, (queue, level, due, scheduled, bodies[0]))
            else:
                conn.executemany(_INSERT, [(queue, level, due, scheduled, b) for b in bodies])
            addresses = _take_waiters(conn, (queue,)) if wake else []
        held.queues.add(queue)
        if addresses:
            ring(addresses)

    def insert_message(
        self,
        conn: sqlite3.Connection,
        queue: str,
        level: int,
        body: bytes,
        countdown: float | None,
        eta: float | None,
    ) -> list[str]:
        """Queue one message inside the caller's write transaction (a unique send claims
        its key in the same one); returns the doorbells to ring after it commits."""
        now = time.time()
        due = now
        if countdown is not None:
            due = now + max(0.0, countdown)
        elif eta is not None:
            due = max(now, eta)
        scheduled = 1 if due > now else 0
        conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
        wake = not scheduled or _earlier_than_all(conn, due)
        conn.execute(_INSERT, (queue, level, due, scheduled, body))
        return _take_waiters(conn, (queue,)) if wake else []

    def _publish_one(self, queue: str, level: int, due: float, body: bytes) -> None:
        """The common case in one autocommit statement, which also says whether anyone
        waits; their rows are taken after it (a waiter that registered in between is
        rung too: harmless, as its own look would have found the message anyway)."""
        db = self.db
        held = db.connection()
        if queue not in held.queues:
            db.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
            held.queues.add(queue)
        waiting = db.execute_returning(_INSERT_ONE, (queue, level, due, 0, body))
        if waiting and waiting[0][0]:
            addresses = db.execute_returning(TAKE_WAITERS, ("q:" + queue,))
            ring(row[0] for row in addresses)

    # consuming ----------------------------------------------------------------------
    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None = None,
    ) -> TransportConsumer:
        carried = results if results is not None and self.carries_results_of(results) else None
        return SQLiteConsumer(self, queues, consumer_id, lease_seconds, carried)

    def renew(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        if not consumer_ids:
            return
        expires = time.time() + lease_seconds
        with self.db.write() as held:
            held.conn.executemany(_RENEW, [(cid, expires) for cid in consumer_ids])

    def reclaim(self, consumer_id: str | None = None) -> int:
        if consumer_id is None and not self.db.read(_EXPIRED, (time.time(),)):
            return 0  # the common case, answered without taking the write lock
        with self.db.write() as held:
            conn = held.conn
            if consumer_id is not None:
                victims = [consumer_id]
            else:
                victims = [row[0] for row in conn.execute(_EXPIRED, (time.time(),))]
            queues: set[str] = set()
            count = 0
            for victim in victims[:_RECLAIM_BATCH]:
                returned = conn.execute(_RECLAIM, (victim,)).fetchall()
                count += len(returned)
                queues.update(row[0] for row in returned)
                conn.execute("DELETE FROM consumers WHERE id = ?", (victim,))
            addresses = _take_waiters(conn, queues)
        if addresses:
            ring(addresses)
        return count

    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        with self.db.write() as held:
            conn = held.conn
            queues: set[str] = set()
            for delivery in deliveries:
                row = conn.execute(_RELEASE, (int(delivery.tag), consumer_id)).fetchone()
                if row is not None:
                    queues.add(row[0])
            addresses = _take_waiters(conn, queues)
        if addresses:
            ring(addresses)

    def discard(self, consumer_id: str, tags: Sequence[str]) -> None:
        if tags:
            with self.db.write() as held:
                held.conn.executemany(_ACK, [(int(tag), consumer_id) for tag in tags])

    def leased_body(self, consumer_id: str, tag: str) -> bytes | None:
        rows = self.db.read(
            "SELECT body FROM messages WHERE id = ? AND owner = ?", (int(tag), consumer_id)
        )
        return bytes(rows[0][0]) if rows else None

    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        due = time.time() + max(0.0, delay)
        with self.db.write() as held:
            conn = held.conn
            wake = _earlier_than_all(conn, due)
            row = conn.execute(_DEFER, (due, int(delivery.tag), consumer_id)).fetchone()
            addresses = _take_waiters(conn, (row[0],)) if row is not None and wake else []
        if addresses:
            ring(addresses)

    # inspection ---------------------------------------------------------------------
    def queues(self) -> list[QueueStats]:
        now = time.time()
        stats = {row[0]: QueueStats(row[0]) for row in self.db.read("SELECT name FROM queues")}
        waiting = self.db.read(
            "SELECT queue, priority, count(*) FROM messages "
            "WHERE owner IS NULL AND (scheduled = 0 OR due <= ?) GROUP BY queue, priority",
            (now,),
        )
        for name, priority, count in waiting:
            entry = stats.setdefault(name, QueueStats(name))
            entry.ready += count
            entry.by_priority[priority] = count
        held = self.db.read(
            "SELECT queue, count(*) FROM messages WHERE scheduled = 1 AND due > ? GROUP BY queue",
            (now,),
        )
        for name, count in held:
            stats.setdefault(name, QueueStats(name)).scheduled = count
        return [stats[name] for name in sorted(stats)]

    def purge(self, queues: Sequence[str]) -> int:
        if not queues:
            return 0
        marks = ", ".join("?" * len(queues))
        return self.db.execute(
            f"DELETE FROM messages WHERE owner IS NULL AND queue IN ({marks})", tuple(queues)
        )

    def inflight_count(self) -> int:
        rows = self.db.read(
            "SELECT count(*) FROM messages WHERE owner IS NOT NULL AND scheduled = 0"
        )
        return int(rows[0][0])

    def close(self) -> None:
        self._coordinator = None  # it shares this database
        self.db.close()

    # capabilities beside the interface (stores/mailbox.py, eventlog.py, probe.py) ----
    def control_mailbox(self) -> Mailbox:
        from .mailbox import SQLiteMailbox

        return SQLiteMailbox(self)

    def event_log(self) -> EventLog:
        from .eventlog import SQLiteEventLog

        return SQLiteEventLog(self)

    def oldest_waiting(self, queues: Sequence[str]) -> dict[str, float]:
        # due: the publish time, or the ETA of a promoted message
        rows = self.db.read(
            "SELECT queue, min(due) FROM messages WHERE owner IS NULL AND scheduled = 0 "
            "GROUP BY queue"
        )
        return {str(q): float(due) for q, due in rows if q in queues and due is not None}

    def scheduled(self, queues: Sequence[str], limit: int) -> list[Scheduled]:
        held: list[Scheduled] = []
        for queue in queues:
            rows = self.db.read(
                "SELECT due, priority, body FROM messages WHERE queue = ? AND scheduled = 1 "
                "ORDER BY due LIMIT ?",
                (queue, limit),
            )
            held += [Scheduled(queue, float(d), int(p), bytes(b)) for d, p, b in rows]
        return held


def _earlier_than_all(conn: sqlite3.Connection, due: float) -> bool:
    first = conn.execute(_FIRST_DUE).fetchone()[0]
    return first is None or due < first


class SQLiteConsumer(TransportConsumer):
    """One consuming loop's handle: its own connection (per thread) and doorbell."""

    def __init__(
        self,
        broker: SQLiteTransport,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None,
    ) -> None:
        if not queues:
            raise ValueError("a consumer needs at least one queue")
        self.broker = broker
        self.db = broker.db
        self.consumer_id = consumer_id
        self.lease_seconds = lease_seconds
        self._queues = list(queues)
        self._turn = 0
        self._bell: Doorbell | None = None
        self._armed = False  # our doorbell's address is in the waiters table
        self._results = results
        self._results_ttl = max(float(results.expires), 0.001) if results is not None else 0.0
        self.carries_results = results is not None

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while True:
            bell = self._bell
            if bell is None and timeout > 0:
                bell = self._bell = Doorbell()
            if bell is not None and self._armed:
                bell.clear()  # rings from before this look are answered by it
            address = bell.address if bell is not None else None
            got, next_due = self._lease(limit, address)
            self._armed = not got and address is not None  # _lease left our doorbell
            if got:
                if bell is not None:
                    bell.rung()
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0 or bell is None:
                return []
            wait = min(remaining, BACKSTOP)
            if next_due is not None:
                wait = min(wait, next_due - time.time())
            if wait > 0:
                bell.wait(wait)

    def _lease(self, limit: int, address: str | None) -> tuple[list[Delivery], float | None]:
        """One transaction: renew the lease, promote due ETAs, take up to ``limit``; if
        nothing was there, leave our doorbell and say when the next ETA is due."""
        n = len(self._queues)
        order = [self._queues[(self._turn + i) % n] for i in range(n)]
        self._turn = (self._turn + 1) % n
        got: list[Delivery] = []
        now = time.time()
        with self.db.write() as held:
            conn = held.conn
            conn.execute(_RENEW, (self.consumer_id, now + self.lease_seconds))
            conn.execute(_PROMOTE, (now,))
            for queue in order:
                rows = conn.execute(_LEASE, (self.consumer_id, queue, limit - len(got))).fetchall()
                rows.sort(key=lambda r: (r[1], r[2], r[0]))  # RETURNING has no order
                got.extend(Delivery(str(r[0]), r[4], queue, r[1], r[3]) for r in rows)
                if len(got) >= limit:
                    break
            if got:
                return got, None
            if address is not None:
                conn.executemany(_WAIT, [("q:" + q, address) for q in order])
            next_due: float | None = conn.execute(_FIRST_DUE).fetchone()[0]
        return got, next_due

    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        tag = int(delivery.tag)
        results = self._results
        if result is None or results is None:
            self.db.execute(_ACK, (tag, self.consumer_id))
            return
        # The result and the end of the lease commit together.
        with self.db.write() as held:
            addresses = self.db.put_result(
                held.conn, result.task_id, result.payload, result.final, self._results_ttl
            )
            held.conn.execute(_ACK, (tag, self.consumer_id))
        if addresses:
            ring(addresses)

    def store(self, result: ResultWrite) -> bool:
        if self._results is None:
            return False
        self._results.store(result.task_id, result.payload, result.final)
        return True

    def release(self, deliveries: Sequence[Delivery]) -> None:
        self.broker.release(self.consumer_id, deliveries)

    def recover(self, known_tags: set[str]) -> int:
        rows = self.db.read(
            "SELECT id FROM messages WHERE owner = ? AND scheduled = 0 ORDER BY id",
            (self.consumer_id,),
        )
        lost = [Delivery(str(r[0]), b"", "", 0) for r in rows if str(r[0]) not in known_tags]
        if lost:
            self.broker.release(self.consumer_id, lost)
        return len(lost)

    def flush(self) -> None:
        """Nothing to wait for: every ack committed before it returned."""

    def close(self) -> None:
        bell, self._bell = self._bell, None
        if bell is None:
            return
        if bell.address is not None:
            with contextlib.suppress(Exception):  # best effort: a stale row costs one ring
                self.db.execute("DELETE FROM waiters WHERE address = ?", (bell.address,))
        bell.close()
