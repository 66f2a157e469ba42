"""The dashboard's task history: the store's event stream folded into an SQLite index.

The event stream (stores/eventlog.py) is a log: good for "what happened next", useless
for "the failed ``emails.send`` tasks of yesterday, page 40". So the dashboard reads
the stream and folds each event into a row per task, in a file of its own, with the
indexes the pages need. Paging is by keyset (``seq < last seen``, newest first), so
page 40,000 costs what page 1 costs (flower#550: Flower keeps everything in memory and
pages by offset). The order is ``(seen, seq)``: when the task was first seen by its
events' own clock, since the stream holds each process's batch in the order it was
flushed, not the order things happened.

Durable: the file keeps the rows and the id of the last event folded, so a restarted
dashboard goes on where it stopped, and catches up on what workers stored meanwhile
(as far back as the stream keeps, ``event_stream_max_len``). Bounded: the oldest tasks
beyond ``dashboard_max_tasks`` are deleted with their events.

Times are epoch seconds.
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..exceptions import ConfigurationError
from .fold import BUCKET_SECONDS, FINAL, STATES, fold_batch, fold_state

__all__ = ["BUCKET_SECONDS", "FINAL", "STATES", "History", "TaskFilter", "TaskRow", "fold_state"]

_TRIM_EVERY = 5_000  # tasks added between retention trims

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq       INTEGER PRIMARY KEY,   -- order folded in: breaks ties of seen
    id        TEXT NOT NULL UNIQUE,
    name      TEXT,
    state     TEXT NOT NULL,
    state_at  REAL NOT NULL,         -- timestamp of the event that set state
    seen      REAL NOT NULL,         -- earliest event's timestamp: listings' order
    queue     TEXT,
    worker    TEXT,
    args      TEXT,
    kwargs    TEXT,
    result    TEXT,
    exception TEXT,
    traceback TEXT,
    received  REAL,
    started   REAL,
    finished  REAL,
    runtime   REAL,
    retries   INTEGER NOT NULL DEFAULT 0,
    eta       REAL,
    root_id   TEXT,
    parent_id TEXT,
    group_id  TEXT,
    chord_id  TEXT                   -- the chord a header task counts in, or a join's chord
);
-- Listings are newest first by (seen, seq); every index ends in seq (the rowid).
CREATE INDEX IF NOT EXISTS tasks_seen ON tasks (seen);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, seen);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, seen);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (queue, seen);
CREATE INDEX IF NOT EXISTS tasks_worker ON tasks (worker, seen);
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_root ON tasks (root_id) WHERE root_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS task_events (
    seq      INTEGER PRIMARY KEY,
    task_seq INTEGER NOT NULL,       -- tasks.seq: trimmed with its task
    type     TEXT NOT NULL,
    at       REAL NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_events_task ON task_events (task_seq);
-- Counts per state and per chart bucket, kept as events are folded, so the overview
-- never counts a million rows.
CREATE TABLE IF NOT EXISTS state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (
    bucket      INTEGER PRIMARY KEY,  -- floor(finished / BUCKET_SECONDS)
    succeeded   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    runtime_sum REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS workers (
    hostname  TEXT PRIMARY KEY,
    info      TEXT NOT NULL,
    last      REAL NOT NULL,
    online    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = (
    "seq, id, name, state, state_at, seen, queue, worker, args, kwargs, result, exception,"
    " traceback, received, started, finished, runtime, retries, eta, root_id, parent_id,"
    " group_id, chord_id"
)

# Columns added after the first release of the history file: added to an older file
# when it is opened (CREATE TABLE IF NOT EXISTS leaves an existing table as it is).
_ADDED_COLUMNS = ("group_id", "chord_id")
_ADDED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS tasks_chord ON tasks (chord_id) WHERE chord_id IS NOT NULL"
)


@dataclass(slots=True)
class TaskRow:
    seq: int
    id: str
    name: str | None
    state: str
    state_at: float
    seen: float
    queue: str | None
    worker: str | None
    args: str | None
    kwargs: str | None
    result: str | None
    exception: str | None
    traceback: str | None
    received: float | None
    started: float | None
    finished: float | None
    runtime: float | None
    retries: int
    eta: float | None
    root_id: str | None
    parent_id: str | None
    group_id: str | None
    chord_id: str | None


@dataclass(slots=True)
class TaskFilter:
    """What the task list shows: every field optional; ``search`` matches an id prefix
    or a substring of the arguments."""

    state: str | None = None
    name: str | None = None
    queue: str | None = None
    worker: str | None = None
    since: float | None = None
    search: str | None = None
    search_args: bool = True
    id_prefix: str | None = None  # tasks whose id starts so (the id index, no scan)
    # The oldest (seen, seq) to look at: bounds a search's scan (see scan_floor).
    floor: tuple[float, int] | None = None


class History:
    def __init__(self, path: Path, max_tasks: int) -> None:
        self.path = path
        self.max_tasks = max(1, int(max_tasks))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _hold_lock(path)
        self._local = threading.local()
        self._since_trim = 0
        with self._connect() as conn:
            conn.executescript(SCHEMA)
            have = {str(column[1]) for column in conn.execute("PRAGMA table_info(tasks)")}
            for column in _ADDED_COLUMNS:
                if column not in have:
                    conn.execute(f"ALTER TABLE tasks ADD COLUMN {column} TEXT")
            conn.execute(_ADDED_INDEXES)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections stay in their thread)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    # --- writing: the follower thread --------------------------------------------------
    def cursor(self) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()
        return None if row is None else str(row[0])

    def fold(self, batch: Sequence[tuple[str, bytes]]) -> int:
        """Fold a batch read from the event stream in one transaction (with the cursor,
        so a crash between the two never folds an event twice); returns tasks added."""
        if not batch:
            return 0
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            added = fold_batch(db, batch)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('cursor', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (batch[-1][0],),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._since_trim += added
        if self._since_trim >= _TRIM_EVERY:
            self._since_trim = 0
            self.trim()
        return added

    def trim(self) -> int:
        """Delete the oldest tasks beyond ``max_tasks`` with their events; returns how
        many tasks went."""
        db = self.db
        top = db.execute("SELECT max(seq) FROM tasks").fetchone()[0]
        if top is None:
            return 0
        cutoff = int(top) - self.max_tasks
        if cutoff <= 0:
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            gone = db.execute(
                "SELECT state, count(*) FROM tasks WHERE seq <= ? GROUP BY state", (cutoff,)
            ).fetchall()
            for state, n in gone:
                db.execute("UPDATE state_counts SET n = n - ? WHERE state = ?", (n, state))
            deleted = db.execute("DELETE FROM tasks WHERE seq <= ?", (cutoff,)).rowcount
            db.execute("DELETE FROM task_events WHERE task_seq <= ?", (cutoff,))
            oldest = db.execute("SELECT min(finished) FROM tasks").fetchone()[0]
            if oldest is not None:
                db.execute(
                    "DELETE FROM buckets WHERE bucket < ?", (int(oldest // BUCKET_SECONDS),)
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(deleted)

    # --- reading: the pages ---------------------------------------------------------------
    def tasks(
        self, where: TaskFilter, before: tuple[float, int] | None = None, limit: int = 50
    ) -> list[TaskRow]:
        """Newest first; ``before`` is ``(seen, seq)`` of the last row of the previous
        page (a keyset: any page costs what the first does)."""
        clauses, params = self._clauses(where)
        if before is not None:
            clauses.append("(seen, seq) < (?, ?)")
            params.extend(before)
        sql = f"SELECT {_COLUMNS} FROM tasks"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seen DESC, seq DESC LIMIT ?"
        params.append(limit)
        return [TaskRow(*row) for row in self.db.execute(sql, params)]

    def _clauses(self, where: TaskFilter) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("state", "name", "queue", "worker"):
            value = getattr(where, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if where.since is not None:
            clauses.append("seen >= ?")
            params.append(where.since)
        if where.id_prefix:
            # A subquery, so the planner walks the id index, not the listing's order.
            clauses.append("seq IN (SELECT seq FROM tasks WHERE id >= ? AND id < ? LIMIT 1000)")
            params.extend([where.id_prefix, where.id_prefix + "\U0010ffff"])
        if where.floor is not None:
            clauses.append("(seen, seq) >= (?, ?)")
            params.extend(where.floor)
        if where.search:
            term = where.search.strip()
            if where.search_args:
                clauses.append("(id LIKE ? ESCAPE '\\' OR args LIKE ? ESCAPE '\\' "
                               "OR kwargs LIKE ? ESCAPE '\\')")
                pattern = "%" + _escape_like(term) + "%"
                params.extend([_escape_like(term) + "%", pattern, pattern])
            else:
                clauses.append("id LIKE ? ESCAPE '\\'")
                params.append(_escape_like(term) + "%")
        return clauses, params

    def scan_floor(
        self, before: tuple[float, int] | None, window: int
    ) -> tuple[float, int] | None:
        """The ``(seen, seq)`` of the task ``window`` rows older than ``before`` (from
        the newest when None), or None when there are fewer. A substring search reads
        every row it passes, so a page of it looks no further than this."""
        sql = "SELECT seen, seq FROM tasks"
        params: list[Any] = []
        if before is not None:
            sql += " WHERE (seen, seq) < (?, ?)"
            params.extend(before)
        sql += " ORDER BY seen DESC, seq DESC LIMIT 1 OFFSET ?"
        params.append(window)
        row = self.db.execute(sql, params).fetchone()
        return None if row is None else (float(row[0]), int(row[1]))

    def task(self, task_id: str) -> TaskRow | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        found = row.fetchone()
        return None if found is None else TaskRow(*found)

    def timeline(self, seq: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT body FROM task_events WHERE task_seq = ? ORDER BY at, seq", (seq,)
        )
        return [json.loads(body) for (body,) in rows]

    def children(self, task_id: str, limit: int = 200) -> list[TaskRow]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE parent_id = ? ORDER BY seq LIMIT ?",
            (task_id, limit),
        )
        return [TaskRow(*row) for row in rows]

    def workflow(self, root_id: str, limit: int = 300) -> list[TaskRow]:
        """The tasks of one workflow (a chain's steps, a group's members, a chord's
        header and body, their children), oldest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE root_id = ? ORDER BY seen, seq LIMIT ?",
            (root_id, limit),
        )
        return [TaskRow(*row) for row in rows]

    def chord(self, chord_id: str, limit: int = 300) -> list[TaskRow]:
        """The tasks of one chord the history holds: its header tasks and its join,
        oldest first."""
        return [
            TaskRow(*found)
            for found in self.db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE chord_id = ? ORDER BY seen, seq LIMIT ?",
                (chord_id, limit),
            )
        ]

    def state_counts(self) -> dict[str, int]:
        return {
            str(state): int(n)
            for state, n in self.db.execute("SELECT state, n FROM state_counts WHERE n > 0")
        }

    def buckets(self, since: float) -> list[tuple[int, int, int, float]]:
        """``(bucket, succeeded, failed, runtime_sum)`` from ``since`` on, oldest first."""
        rows = self.db.execute(
            "SELECT bucket, succeeded, failed, runtime_sum FROM buckets "
            "WHERE bucket >= ? ORDER BY bucket",
            (int(since // BUCKET_SECONDS),),
        )
        return [(int(b), int(s), int(f), float(r)) for b, s, f, r in rows]

    def distinct(self, column: str, limit: int = 200) -> list[str]:
        """Known values of name, queue or worker, for the filter menus (a skip scan of
        the column's index: fast with many rows and few distinct values)."""
        if column not in ("name", "queue", "worker"):
            raise ValueError(f"no filter on {column!r}")
        values: list[str] = []
        last = ""
        while len(values) < limit:
            row = self.db.execute(
                f"SELECT {column} FROM tasks WHERE {column} > ? ORDER BY {column} LIMIT 1",
                (last,),
            ).fetchone()
            if row is None:
                break
            last = str(row[0])
            values.append(last)
        return values

    def received_since(self, since: float) -> dict[str, int]:
        """Tasks first seen since ``since``, per queue (the queues' rate out)."""
        rows = self.db.execute(
            "SELECT queue, count(*) FROM tasks WHERE seen >= ? GROUP BY queue", (since,)
        )
        return {str(queue): int(n) for queue, n in rows if queue is not None}

    def workers(self) -> list[tuple[str, dict[str, Any], float, bool]]:
        rows = self.db.execute("SELECT hostname, info, last, online FROM workers ORDER BY hostname")
        return [(str(h), json.loads(i), float(last), bool(on)) for h, i, last, on in rows]

    def running_on(self, hostname: str, limit: int = 100) -> list[TaskRow]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM tasks WHERE worker = ? AND state = 'STARTED' "
            "ORDER BY seq DESC LIMIT ?",
            (hostname, limit),
        )
        return [TaskRow(*row) for row in rows]

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None


def _hold_lock(path: Path) -> IO[bytes] | None:
    """One dashboard per history file: two would both fold the stream into it, and
    count every task twice. The lock goes with the process."""
    lock = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115 - held open
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise ConfigurationError(
            f"another dashboard uses the history file {path}: give this one --db PATH"
        ) from None
    return lock


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
