"""The SQLite result backend: a row per task in the ``results`` table.

A final state replaces anything; an interim one (RECEIVED, STARTED, PROGRESS, RETRY)
never replaces a final one. Rows carry ``result_expires``: readers ignore expired rows
and writers sweep them (at most every 10 s, 1,000 at a time).

``wait()`` is pushed: the waiter checks for the final row and, in the same transaction,
leaves its doorbell's address; the writer of the final row takes those addresses in its
own transaction and rings them after committing (see ``stores/sqlite/doorbell.py``). With
the broker on the same file, the worker's ack stores the result in the transaction
that deletes the message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..results import ChordBody, ChordSpec, ResultBackend
from .database import TAKE_WAITERS, Database
from .doorbell import BACKSTOP, Doorbell, ring

if TYPE_CHECKING:
    import sqlite3

    from ..transport import ResultWrite

__all__ = ["SQLiteBackend"]

_GET = "SELECT payload FROM results WHERE task_id = ? AND expires > ?"
# Task ids per query in get_many (SQLite allows 32,766 parameters since 3.32, 999 before).
_MANY = 500
_GET_FINAL = "SELECT payload FROM results WHERE task_id = ? AND final = 1 AND expires > ?"


logger = logging.getLogger("conveyor.backend")

# Chords: recorded once; each header task counted once (INSERT OR IGNORE), and the
# transaction that counts the last one queues the body (docs/architecture.md).
_CHORD_START = """
INSERT INTO chords (id, size, members, body, queue, priority, enqueue, expires)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET expires = excluded.expires
"""
_CHORD_SWEEP = "SELECT id FROM chords WHERE expires <= ? LIMIT 100"
_CHORD_COUNT = "INSERT OR IGNORE INTO chord_parts (chord, task_id) VALUES (?, ?)"
_CHORD_DONE = """
UPDATE chords SET done = done + 1 WHERE id = ?
RETURNING done, size, body, queue, priority, enqueue
"""
_ENQUEUE = "INSERT INTO messages (queue, priority, due, scheduled, body) VALUES (?, ?, ?, 0, ?)"


class _Bells(threading.local):
    bell: Doorbell | None = None


class SQLiteBackend(ResultBackend):
    def __init__(self, url: str, *, expires: float = 86400.0) -> None:
        self.url = url
        self.db = Database(url)
        self.location = f"sqlite:{self.db.path}"
        self.expires = expires
        self.ttl = max(float(expires), 0.001)
        self._bells = _Bells()

    def store(self, task_id: str, payload: bytes, final: bool) -> None:
        with self.db.write() as held:
            addresses = self.db.put_result(held.conn, task_id, payload, final, self.ttl)
        if addresses:
            ring(addresses)

    def get(self, task_id: str) -> bytes | None:
        rows = self.db.read(_GET, (task_id, time.time()))
        return bytes(rows[0][0]) if rows else None

    def get_many(self, task_ids: Sequence[str]) -> list[bytes | None]:
        """One query per :data:`_MANY` tasks (the async client's waiter reads every
        pending result each round: a thousand single reads would hold the GIL ~50x as
        long)."""
        found: dict[str, bytes] = {}
        now = time.time()
        for start in range(0, len(task_ids), _MANY):
            chunk = task_ids[start : start + _MANY]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT task_id, payload FROM results WHERE task_id IN ({marks}) AND expires > ?"
            for task_id, payload in self.db.read(sql, (*chunk, now)):
                found[task_id] = bytes(payload)
        return [found.get(task_id) for task_id in task_ids]

    def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        rows = self.db.read(_GET_FINAL, (task_id, time.time()))
        if rows:
            return bytes(rows[0][0])
        deadline = None if timeout is None else time.monotonic() + timeout
        bell = self._bell()
        channel = "r:" + task_id
        registered = False
        try:
            while True:
                bell.clear()
                with self.db.write() as held:
                    conn = held.conn
                    row = conn.execute(_GET_FINAL, (task_id, time.time())).fetchone()
                    if row is not None:
                        if registered:
                            conn.execute(
                                "DELETE FROM waiters WHERE channel = ? AND address = ?",
                                (channel, bell.address),
                            )
                            registered = False
                        return bytes(row[0])
                    if bell.address is not None:
                        conn.execute(
                            "INSERT OR IGNORE INTO waiters (channel, address) VALUES (?, ?)",
                            (channel, bell.address),
                        )
                        registered = True
                wait = BACKSTOP
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return None
                if bell.wait(wait):
                    registered = False  # the writer took our row when it rang
                    rows = self.db.read(_GET_FINAL, (task_id, time.time()))
                    if rows:  # the usual case: a plain read, no write transaction
                        return bytes(rows[0][0])
        finally:
            if registered:
                with contextlib.suppress(Exception):
                    self.db.execute(
                        "DELETE FROM waiters WHERE channel = ? AND address = ?",
                        (channel, bell.address),
                    )

    def _bell(self) -> Doorbell:
        bell = self._bells.bell
        if bell is None or bell.pid != os.getpid():  # a forked child needs its own
            bell = self._bells.bell = Doorbell()
        return bell

    # chords ---------------------------------------------------------------------------
    def chord_start(self, spec: ChordSpec) -> None:
        now = time.time()
        body = spec.body
        row = (spec.id, len(spec.members), json.dumps(spec.members), body.body, body.queue,
               body.priority, int(spec.enqueue), now + self.ttl)  # fmt: skip
        with self.db.write() as held:
            conn = held.conn
            for (old,) in conn.execute(_CHORD_SWEEP, (now,)).fetchall():
                conn.execute("DELETE FROM chord_parts WHERE chord = ?", (old,))
                conn.execute("DELETE FROM chords WHERE id = ?", (old,))
            conn.execute(_CHORD_START, row)

    def chord_part(self, chord_id: str, write: ResultWrite) -> ChordBody | None:
        with self.db.write() as held:
            conn = held.conn
            addresses = self.db.put_result(
                conn, write.task_id, write.payload, write.final, self.ttl
            )
            body = _count(conn, chord_id, write.task_id, addresses)
        if addresses:
            ring(addresses)
        return body

    def chord_members(self, chord_id: str) -> list[str] | None:
        rows = self.db.read("SELECT members FROM chords WHERE id = ?", (chord_id,))
        if not rows:
            return None
        members: list[str] = json.loads(rows[0][0])
        return members

    def forget(self, task_id: str) -> None:
        self.db.execute("DELETE FROM results WHERE task_id = ?", (task_id,))

    def close(self) -> None:
        bell, self._bells.bell = self._bells.bell, None
        if bell is not None:
            bell.close()
        self.db.close()


def _count(
    conn: sqlite3.Connection, chord_id: str, task_id: str, addresses: list[str]
) -> ChordBody | None:
    """Count a header task in the caller's transaction. When it completes the chord,
    queue the body here (adding the queue's waiters to ``addresses``) or return it."""
    if conn.execute(_CHORD_COUNT, (chord_id, task_id)).rowcount == 0:
        return None  # counted before: a redelivered or repeated task
    chord = conn.execute(_CHORD_DONE, (chord_id,)).fetchone()
    if chord is None:
        logger.warning("chord %s is unknown (expired?): %s not counted", chord_id, task_id)
        return None
    done, size, body, queue, priority, enqueue = chord
    if done != size:
        return None
    if not enqueue:
        return ChordBody(bytes(body), queue, priority)
    conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (queue,))
    conn.execute(_ENQUEUE, (queue, priority, time.time(), body))
    addresses.extend(row[0] for row in conn.execute(TAKE_WAITERS, ("q:" + queue,)))
    return None
