"""Checkpoints of the SQLite write-ahead log, run off the hot path.

In WAL mode every commit appends pages to ``<db>-wal``; a *checkpoint* copies them back
into the database file and, with ``synchronous = NORMAL``, fsyncs both files. SQLite
runs one inside whichever commit pushes the log past ``wal_autocheckpoint`` pages, so
one ack in a few hundred would pay for copying ~1,000 pages and two fsyncs (milliseconds
on a busy disk). Here a thread of each writing process runs them instead, after every
``EVERY_COMMITS`` commits of that process or a second after its last commit; the
in-commit checkpoint stays only as a backstop, at a much larger log.

A process that forks must not have this thread running: a fork can copy a lock held by
another thread into the child, and SQLite forbids carrying a connection across a fork.
So the thread is stopped (joined) just before any ``os.fork()`` and started again on the
next commit, in the parent and in the child alike.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from pathlib import Path

__all__ = ["BACKSTOP_PAGES", "Checkpointer", "checkpointer_for"]

EVERY_COMMITS = 256
IDLE_AFTER = 1.0
IDLE_EXIT = 10  # idle ticks before the thread leaves
# Past this many pages in the log, start it over (see _checkpoint).
RESTART_PAGES = 4000
# SQLite's own in-commit checkpoint, if this thread ever falls behind.
BACKSTOP_PAGES = 8000


class Checkpointer:
    """One per database file and process; ``committed()`` is called after each commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._commits = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        _all.add(self)

    def committed(self) -> None:
        self._commits += 1  # approximate across threads, which is all it needs to be
        if self._thread is None:
            self._start()
        if self._commits >= EVERY_COMMITS:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop and not _forking:
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        # The timeout is for RESTART, which waits (SQLite's busy handler) for the lock.
        conn = sqlite3.connect(str(self.path), timeout=0.05, isolation_level=None)
        idle = 0
        try:
            while True:
                # Woken after EVERY_COMMITS commits, else each second while commits trickle.
                self._wake.wait(IDLE_AFTER)
                self._wake.clear()
                if self._stop:
                    return
                if self._commits == 0:
                    idle += 1
                    if idle >= IDLE_EXIT and self._retire():
                        return
                    continue
                idle = 0
                self._commits = 0
                with contextlib.suppress(sqlite3.OperationalError):  # busy: next time
                    self._checkpoint(conn)
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        # PASSIVE copies without blocking anyone. But a writer only starts the log over
        # when it begins right after a complete checkpoint, which never happens while
        # two processes take turns writing: so once the log is long, RESTART takes the
        # write lock for the last few pages and makes the next writer start it over.
        _, log, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        if log >= RESTART_PAGES:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def _retire(self) -> bool:
        """Leave after a long idle spell (the next commit starts a new thread)."""
        with self._lock:
            if self._commits or self._stop:
                return False
            self._thread = None
            return True

    def stop(self) -> None:
        """Stop the thread and wait for it (before a fork, or on close)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._stop = True
            self._wake.set()
        thread.join()
        self._stop = False
        self._wake.clear()

    def _forget_after_fork(self) -> None:
        self._thread = None
        self._stop = False
        self._lock = threading.Lock()
        self._wake = threading.Event()


_all: weakref.WeakSet[Checkpointer] = weakref.WeakSet()
_by_path: weakref.WeakValueDictionary[Path, Checkpointer] = weakref.WeakValueDictionary()
_by_path_lock = threading.Lock()


def checkpointer_for(path: Path) -> Checkpointer:
    """The process's checkpointer for ``path`` (a broker and a backend on one file share
    it, so there is one thread per file and process)."""
    with _by_path_lock:
        found = _by_path.get(path)
        if found is None:
            found = _by_path[path] = Checkpointer(path)
        return found


_forking = False  # no thread may start between _before_fork and the fork itself


def _before_fork() -> None:
    global _forking
    _forking = True
    for checkpointer in list(_all):
        checkpointer.stop()


def _after_fork_in_parent() -> None:
    global _forking
    _forking = False


def _after_fork_in_child() -> None:
    global _forking
    _forking = False
    for checkpointer in list(_all):
        checkpointer._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
