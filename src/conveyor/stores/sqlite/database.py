"""SQLite plumbing shared by the SQLite broker and the SQLite result backend.

One file holds everything: messages, consumer leases, dead letters, workers, results
and the doorbell addresses of waiters (see ``_doorbell.py``). The schema is below, in
one place. Every process and every thread gets its own connection (SQLite connections
must not cross a ``fork()``), in WAL mode so readers never block the one writer.

Busy handling is ours, not SQLite's: its built-in busy handler sleeps 1 ms, then 2, 5,
10 ms... between tries, which costs far more than our transactions (~20-50 µs) when two
worker processes write at once. We start write transactions with ``BEGIN IMMEDIATE``
(the only statement that waits for the write lock in WAL mode) and retry it ourselves,
backing off from 20 µs to 1 ms, for up to ``busy_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from ...exceptions import BrokerUnavailable, ConfigurationError
from .checkpointer import BACKSTOP_PAGES, checkpointer_for

__all__ = ["TAKE_WAITERS", "Database", "SQLiteBusy", "path_from_url"]

SCHEMA_VERSION = 3  # 2: the flow-control tables; 3: chords
PAGE_SIZE = 2048

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY,  -- the delivery tag; grows, so it breaks ties FIFO
    queue      TEXT NOT NULL,
    priority   INTEGER NOT NULL,     -- 0-9, 0 served first
    due        REAL NOT NULL,        -- epoch seconds it may start (its publish time if now)
    scheduled  INTEGER NOT NULL,     -- 1 while held for its ETA; fetch promotes due ones
    owner      TEXT,                 -- the consumer holding its lease; NULL while waiting
    deliveries INTEGER NOT NULL DEFAULT 0,  -- leases so far (a release gives one back)
    body       BLOB NOT NULL
);
-- One index serves fetch (owner IS NULL: the waiting messages of a queue in serving
-- order) and reclaim (owner = a consumer: what it holds), so an ack updates one index.
-- Released and reclaimed messages keep their old due time: back to the front.
CREATE INDEX IF NOT EXISTS messages_by_owner
    ON messages (owner, queue, priority, due, id) WHERE scheduled = 0;
CREATE INDEX IF NOT EXISTS messages_scheduled ON messages (due) WHERE scheduled = 1;

-- Consumer leases: a live consumer renews its row; an expired one is reclaimed.
CREATE TABLE IF NOT EXISTS consumers (
    id      TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;

-- Every queue ever published to (queues() lists empty ones too).
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
    id     TEXT PRIMARY KEY,
    queue  TEXT NOT NULL,
    reason TEXT NOT NULL,
    time   REAL NOT NULL,
    body   BLOB NOT NULL
);

-- Revocations every worker honours until they expire; signal set = terminate it.
CREATE TABLE IF NOT EXISTS revoked (
    task_id TEXT PRIMARY KEY,
    expires REAL NOT NULL,
    signal  TEXT
) WITHOUT ROWID;
-- Counters (the revocations' version, so workers re-read them only when they change).
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS workers (
    name    TEXT PRIMARY KEY,
    info    TEXT NOT NULL,   -- JSON
    expires REAL NOT NULL    -- the heartbeat's TTL
) WITHOUT ROWID;

-- Results: one row per task, final or interim; an interim state never replaces a
-- final one. Expired rows are ignored by readers and swept by writers.
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    final   INTEGER NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_expires ON results (expires);

-- Doorbells of blocked waiters: channel "q:<queue>" or "r:<task id>".
CREATE TABLE IF NOT EXISTS waiters (
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    PRIMARY KEY (channel, address)
) WITHOUT ROWID;

-- Scheduling and flow control (stores/sqlite/coordination.py).
-- Named leases (beat's leader): one owner until the lease expires or is renewed.
CREATE TABLE IF NOT EXISTS leases (
    name    TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
-- The last tick beat recorded for each periodic entry.
CREATE TABLE IF NOT EXISTS schedule_state (
    name TEXT PRIMARY KEY,
    last REAL NOT NULL
) WITHOUT ROWID;
-- Idempotency keys: the first task sent with a key, until the window ends.
CREATE TABLE IF NOT EXISTS unique_keys (
    key     TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
-- Rate limits: GCRA state per task (the next free start slot), run-time overrides,
-- and the slots reserved by deferred messages (task id -> until when it is kept).
CREATE TABLE IF NOT EXISTS rate_state (name TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_limits (name TEXT PRIMARY KEY, rate TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_holds (
    task_id TEXT PRIMARY KEY,
    expires REAL NOT NULL
) WITHOUT ROWID;
-- Concurrency slots: held by a delivery (consumer, message id; tag '' = the consumer).
CREATE TABLE IF NOT EXISTS slots (
    key      TEXT NOT NULL,
    consumer TEXT NOT NULL,
    tag      TEXT NOT NULL,
    PRIMARY KEY (key, consumer, tag)
) WITHOUT ROWID;

-- Chords (stores/sqlite/results.py): the header task ids in order, and the body message to
-- queue when the last is stored; enqueue = 1 puts it in messages in that transaction.
CREATE TABLE IF NOT EXISTS chords (
    id       TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    members  TEXT NOT NULL,     -- JSON list of header task ids
    body     BLOB NOT NULL,
    queue    TEXT NOT NULL,
    priority INTEGER NOT NULL,
    enqueue  INTEGER NOT NULL,
    done     INTEGER NOT NULL DEFAULT 0,  -- rows in chord_parts
    expires  REAL NOT NULL
) WITHOUT ROWID;
-- Header tasks counted, once each (a redelivered task stored again adds no row).
CREATE TABLE IF NOT EXISTS chord_parts (
    chord   TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (chord, task_id)
) WITHOUT ROWID;
"""

# An interim state never replaces a final one (unless that one expired); a final one
# replaces anything (a task that ran again after its worker died writes its outcome).
_PUT_RESULT = """
INSERT INTO results (task_id, payload, final, expires) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (task_id) DO UPDATE
SET payload = excluded.payload, final = excluded.final, expires = excluded.expires
WHERE excluded.final = 1 OR results.final = 0 OR results.expires <= ?5
RETURNING (SELECT count(*) FROM waiters WHERE channel = 'r:' || ?1)
"""
_SWEEP_RESULTS = """
DELETE FROM results WHERE task_id IN
    (SELECT task_id FROM results WHERE expires <= ? ORDER BY expires LIMIT 1000)
"""
_SWEEP_EVERY = 10.0
# Whoever commits what waiters wait for takes their registrations, and rings them.
TAKE_WAITERS = "DELETE FROM waiters WHERE channel = ? RETURNING address"

_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_FIRST_BACKOFF = 0.00002
_MAX_BACKOFF = 0.001


class SQLiteBusy(BrokerUnavailable):
    """The database stayed locked for longer than ``busy_timeout``: the store's one
    mapping of SQLite's errors to :class:`BrokerUnavailable` (``Database._retry``), so
    the worker's loop treats it as an outage: it waits and tries again."""


def _unavailable(url: str, exc: BaseException) -> BrokerUnavailable:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return BrokerUnavailable(f"cannot open the SQLite database at {url}: {reason.lower()}", url)


def path_from_url(url: str) -> tuple[Path, dict[str, str]]:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's form),
    with options such as ``?busy_timeout=30``; relative paths resolve against the
    current directory now, so every process of a worker agrees on the file."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep:
        raise ConfigurationError(f"not an SQLite URL: {url!r}")
    rest, _, query = rest.partition("?")
    if not rest.startswith("/") or rest == "/":
        raise ConfigurationError(
            f"SQLite URL {url!r} has no path: use sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    raw = unquote(rest[1:])
    if raw in ("", ":memory:"):
        raise ConfigurationError(
            "an SQLite broker needs a file that several processes can open; "
            "use memory:// for an in-process broker"
        )
    options = {key: values[-1] for key, values in parse_qs(query).items()}
    return Path(raw).expanduser().resolve(), options


# Every open connection, so that none is ever freed (and so closed) in a forked child:
# SQLite forbids using, or closing, a connection in a process other than its opener's.
_KEEP: set[_Connection] = set()


class _Connection:
    """A connection, the process that opened it, and what it has already recorded."""

    __slots__ = ("__weakref__", "conn", "pid", "queues")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()
        self.queues: set[str] = set()  # queue names known to be in the queues table
        _KEEP.add(self)

    def close(self) -> None:
        if self.pid == os.getpid():
            _KEEP.discard(self)
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()


class _Slot:
    """A thread's connection: closed when the thread ends (in its own process only)."""

    __slots__ = ("held",)

    def __init__(self, held: _Connection) -> None:
        self.held = held

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.held.close()


class Database:
    """The file, and a connection per thread and process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, options = path_from_url(url)
        try:
            self.busy_timeout = float(options.get("busy_timeout", 30.0))
        except ValueError:
            raise ConfigurationError(f"busy_timeout must be seconds: {url!r}") from None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unavailable(url, exc) from exc
        self._local = threading.local()
        self._opened: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._next_sweep = 0.0
        self._checkpointer = checkpointer_for(self.path)

    # connections ----------------------------------------------------------------------
    def connection(self) -> _Connection:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is not None and slot.held.pid == os.getpid():
            return slot.held
        held = self._open()
        self._local.slot = _Slot(held)
        return held

    def _open(self) -> _Connection:
        try:
            return self._open_file()
        except (OSError, sqlite3.OperationalError) as exc:
            # A file that cannot be opened is one line, like an unreachable Redis.
            raise _unavailable(self.url, exc) from exc

    def _open_file(self) -> _Connection:
        # isolation_level=None: we write BEGIN IMMEDIATE / COMMIT ourselves.
        # check_same_thread=False only so close() can close every thread's connection.
        conn = sqlite3.connect(
            str(self.path),
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
        )
        held = _Connection(conn)
        self._opened.add(held)
        # NORMAL in WAL mode: a commit survives the process being killed (the promise
        # that matters here); only a power cut can lose the last commits, as with Redis.
        pragmas = (
            "PRAGMA busy_timeout = 0",
            "PRAGMA synchronous = NORMAL",
            f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}",  # see _checkpointer.py
        )
        for pragma in pragmas:
            self._retry(lambda pragma=pragma: conn.execute(pragma))
        self._migrate(conn)
        return held

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = self._retry(lambda: conn.execute("PRAGMA user_version").fetchone()[0])
        if version >= SCHEMA_VERSION:
            return
        # A new file only: small pages halve what each commit writes to the log (a
        # message row is a few hundred bytes); it cannot change once in WAL mode.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise ConfigurationError(f"could not put {self.path} in WAL mode (got {mode})")
        self._begin(conn)
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in _statements(SCHEMA):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[_Connection]:
        """A write transaction: BEGIN IMMEDIATE (retried while busy) ... COMMIT."""
        held = self.connection()
        conn = held.conn
        self._begin(conn)
        try:
            yield held
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._checkpointer.committed()

    def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
        self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))

    def execute(self, sql: str, params: Any = ()) -> int:
        """One write statement in autocommit mode (atomic on its own); returns rowcount."""
        conn = self.connection().conn
        cursor: sqlite3.Cursor = self._retry(lambda: conn.execute(sql, params))
        self._checkpointer.committed()
        return cursor.rowcount

    def execute_returning(self, sql: str, params: Any = ()) -> list[Any]:
        """One write statement with RETURNING, in autocommit mode; returns its rows."""
        conn = self.connection().conn
        rows: list[Any] = self._retry(lambda: conn.execute(sql, params).fetchall())
        self._checkpointer.committed()
        return rows

    def read(self, sql: str, params: Any = ()) -> list[Any]:
        """One read statement in autocommit mode (WAL: never blocked by the writer)."""
        conn = self.connection().conn
        rows: list[Any] = self._retry(lambda: conn.execute(sql, params).fetchall())
        return rows

    def _retry(self, attempt: Any) -> Any:
        deadline = time.monotonic() + self.busy_timeout
        pause = _FIRST_BACKOFF
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise SQLiteBusy(
                        f"{self.path} stayed locked for {self.busy_timeout}s",
                        url=f"sqlite:///{self.path}",
                    ) from exc
            time.sleep(pause)
            pause = min(pause * 2, _MAX_BACKOFF)

    def close(self) -> None:
        """Close the connections this process opened here (in every thread)."""
        self._checkpointer.stop()
        for held in list(self._opened):
            held.close()
        self._local = threading.local()

    # results (shared by the backend and a co-located broker's ack) -------------------
    def put_result(
        self, conn: sqlite3.Connection, task_id: str, payload: bytes, final: bool, ttl: float
    ) -> list[str]:
        """Store a task's state inside the caller's write transaction; returns the
        doorbells to ring once it commits (waiters of a final state)."""
        now = time.time()
        # One statement stores it and says whether anyone waits (nearly always not).
        stored = conn.execute(_PUT_RESULT, (task_id, payload, int(final), now + ttl, now))
        waiting = stored.fetchall()
        if now >= self._next_sweep:
            self._next_sweep = now + _SWEEP_EVERY
            conn.execute(_SWEEP_RESULTS, (now,))
        if not final or not waiting or not waiting[0][0]:
            return []
        return [row[0] for row in conn.execute(TAKE_WAITERS, ("r:" + task_id,))]


def _statements(script: str) -> Iterator[str]:
    """The statements of ``script`` (executescript() would commit our transaction)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    message = str(exc)
    return "locked" in message or "busy" in message
