"""What only the embedded SQLite broker has to get right: where its file lives, its URL
forms, forked processes, wake-ups that cross processes, locks, and cleaning up."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.exceptions import ConfigurationError
from conveyor.stores.sqlite.database import SQLiteBusy, path_from_url
from conveyor.stores.sqlite.results import SQLiteBackend
from conveyor.stores.sqlite.transport import SQLiteTransport

ROOT = Path(__file__).resolve().parents[2]


def url_for(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'conveyor.db'}"


def test_the_default_broker_is_sqlite_in_a_directory_it_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "not" / "yet"
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    for variable in ("CONVEYOR_BROKER_URL", "CONVEYOR_RESULT_BACKEND"):
        monkeypatch.delenv(variable, raising=False)
    app = Conveyor("embedded", set_as_current=False)
    try:
        assert app.broker_url == f"sqlite:///{home / 'broker.db'}"
        assert app.broker.carries_results_of(app.backend)
        app.broker.publish("celery", [b"x"])
        assert (home / "broker.db").exists()
    finally:
        app.close()


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert path_from_url("sqlite:///relative.db")[0] == tmp_path / "relative.db"
    assert path_from_url(f"sqlite:///{tmp_path}/abs.db")[0] == tmp_path / "abs.db"
    assert path_from_url("sqlite:///x.db?busy_timeout=2")[1] == {"busy_timeout": "2"}
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "redis://x"):
        with pytest.raises(ConfigurationError):
            path_from_url(bad)


def test_a_forked_child_uses_its_own_connection(tmp_path: Path) -> None:
    broker = SQLiteTransport(url_for(tmp_path))
    broker.publish("q", [b"from-parent"])
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            broker.publish("q", [b"from-child"])
            consumer = broker.consumer(["q"], "child", 10.0)
            got = consumer.fetch(1, 1.0)
            if [d.body for d in got] == [b"from-parent"]:
                consumer.ack(got[0])
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection still works, and sees what the child wrote.
    got = broker.consumer(["q"], "parent", 10.0).fetch(10, 1.0)
    assert [d.body for d in got] == [b"from-child"]
    broker.close()


def _in_another_process(code: str, url: str) -> subprocess.Popen[bytes]:
    script = "import sys, time\nurl = sys.argv[1]\n" + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen([sys.executable, "-c", script, url], env=env)


def test_a_publish_in_another_process_wakes_a_blocked_fetch(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    broker = SQLiteTransport(url)
    consumer = broker.consumer(["q"], "c1", 10.0)
    assert consumer.fetch(1, 0) == []  # the tables exist before the other process starts
    child = _in_another_process(
        """
        from conveyor.stores.sqlite.transport import SQLiteTransport
        broker = SQLiteTransport(url)
        time.sleep(0.5)
        broker.publish("q", [repr(time.time()).encode()])
        """,
        url,
    )
    try:
        got = consumer.fetch(1, 10.0)
        received = time.time()
    finally:
        child.wait(10)
    assert len(got) == 1
    delay = received - float(got[0].body)
    assert delay < 0.1, f"woke {delay:.3f}s after the other process published"
    broker.close()


def test_a_result_stored_in_another_process_wakes_a_waiter(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    backend = SQLiteBackend(url)
    assert backend.get("t") is None
    child = _in_another_process(
        """
        from conveyor.stores.sqlite.results import SQLiteBackend
        backend = SQLiteBackend(url)
        time.sleep(0.5)
        backend.store("t", repr(time.time()).encode(), True)
        """,
        url,
    )
    try:
        value = backend.wait("t", 10.0)
        received = time.time()
    finally:
        child.wait(10)
    assert value is not None
    delay = received - float(value)
    assert delay < 0.1, f"woke {delay:.3f}s after the other process stored"
    backend.close()


def test_a_dead_waiter_costs_a_publisher_nothing(tmp_path: Path) -> None:
    broker = SQLiteTransport(url_for(tmp_path))
    broker.consumer(["q"], "c1", 10.0).fetch(1, 0)
    conn = sqlite3.connect(tmp_path / "conveyor.db")
    with conn:
        conn.execute("INSERT INTO waiters VALUES ('q:q', '@conveyor-gone')")
        conn.execute("INSERT INTO waiters VALUES ('q:q', '/nonexistent/dir/gone.sock')")
    broker.publish("q", [b"x"])
    assert conn.execute("SELECT count(*) FROM waiters").fetchone()[0] == 0
    conn.close()
    broker.close()


def test_expired_results_are_swept(tmp_path: Path) -> None:
    backend = SQLiteBackend(url_for(tmp_path), expires=0.1)
    for i in range(5):
        backend.store(f"old-{i}", b"x", True)
    time.sleep(0.2)
    backend.db._next_sweep = 0.0  # the next write sweeps (normally every 10 s)
    backend.store("new", b"y", True)
    conn = sqlite3.connect(tmp_path / "conveyor.db")
    assert [r[0] for r in conn.execute("SELECT task_id FROM results")] == ["new"]
    conn.close()
    backend.close()


def test_a_lock_held_too_long_is_a_connection_error(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    broker = SQLiteTransport(url + "?busy_timeout=0.2")
    broker.publish("q", [b"x"])  # creates the tables
    blocker = sqlite3.connect(tmp_path / "conveyor.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    try:
        with pytest.raises(SQLiteBusy) as caught:
            broker.publish("q", [b"y"])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert isinstance(caught.value, ConnectionError)  # the worker's loop retries these
    assert 0.2 <= time.monotonic() - started < 1.0
    broker.publish("q", [b"z"])  # and it works again once the lock is gone
    broker.close()


def test_the_write_ahead_log_stays_bounded(tmp_path: Path) -> None:
    from conveyor.stores.sqlite.checkpointer import BACKSTOP_PAGES
    from conveyor.stores.sqlite.database import PAGE_SIZE

    broker = SQLiteTransport(url_for(tmp_path))
    wal = tmp_path / "conveyor.db-wal"
    largest = 0
    for i in range(20_000):  # ~3 log pages each: 60,000 pages if never checkpointed
        broker.publish("q", [b"x" * 300])
        if i % 250 == 0:
            largest = max(largest, wal.stat().st_size)
    # Checkpoints may lag behind a busy writer for a while, but not for long.
    assert largest <= 3 * BACKSTOP_PAGES * (PAGE_SIZE + 24)
    broker.close()
