"""The dashboard's history (events folded into SQLite), its masking and its access
rules, without a browser."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.dashboard.history import History, TaskFilter
from conveyor.dashboard.present import Masking
from conveyor.dashboard.security import TOKEN_USER, Access, is_loopback, parse_users
from conveyor.dashboard.server import DashboardOptions
from conveyor.exceptions import ConfigurationError


def _event(kind: str, task_id: str, at: float, **fields: Any) -> bytes:
    return json.dumps({"type": kind, "uuid": task_id, "timestamp": at, "name": "t.add",
                       "hostname": "w1", **fields}).encode()


def _run(task_id: str, at: float, queue: str = "celery", fail: bool = False) -> list[bytes]:
    end = ("task-failed", {"exception": "ValueError('x')", "traceback": "Traceback...",
                           "runtime": 0.5}) if fail else ("task-succeeded",
                                                          {"result": "3", "runtime": 0.25})
    return [
        _event("task-received", task_id, at, args="(1, 2)", kwargs="{}", queue=queue,
               retries=0, root_id=task_id, parent_id=None),
        _event("task-started", task_id, at + 0.1),
        _event(end[0], task_id, at + 0.2, **end[1]),
    ]


Opener = Callable[[int], History]


@pytest.fixture
def open_history(tmp_path: Path) -> Iterator[Opener]:
    opened: list[History] = []

    def make(max_tasks: int) -> History:
        opened.append(History(tmp_path / "h.sqlite3", max_tasks))
        return opened[-1]

    yield make
    for history in opened:
        history.close()


def _fold(history: History, records: list[bytes], start: int = 0) -> None:
    history.fold([(str(start + i + 1), body) for i, body in enumerate(records)])


def test_events_out_of_order_end_in_the_latest_state(open_history: Opener) -> None:
    history = open_history(100)
    received, started, succeeded = _run("a", 100.0)
    _fold(history, [succeeded, received, started])  # two processes' batches, crossed
    row = history.task("a")
    assert row is not None
    assert (row.state, row.args, row.result, row.seen) == ("SUCCESS", "(1, 2)", "3", 100.0)
    assert history.state_counts() == {"SUCCESS": 1}
    assert [e["type"] for e in history.timeline(row.seq)] == [
        "task-received", "task-started", "task-succeeded"
    ]


def test_a_failed_task_sent_again_with_its_id_counts_once_in_its_new_state(
    open_history: Callable[[int], History],
) -> None:
    history = open_history(100)
    _fold(history, _run("a", 100.0, fail=True))
    assert history.state_counts() == {"FAILURE": 1}
    _fold(history, _run("a", 200.0)[:2], start=3)  # retried from the UI: received, started
    assert history.state_counts() == {"STARTED": 1}
    _fold(history, _run("a", 200.0)[2:], start=5)
    row = history.task("a")
    assert row is not None and row.state == "SUCCESS" and row.seen == 100.0
    assert history.state_counts() == {"SUCCESS": 1}
    assert len(history.timeline(row.seq)) == 6
    assert [b[1:] for b in history.buckets(0)] == [(0, 1, 0.5), (1, 0, 0.25)]


def test_keyset_pages_list_every_task_once_newest_first(open_history: Opener) -> None:
    history = open_history(10_000)
    records: list[bytes] = []
    for i in range(130):
        records += _run(f"t{i:03}", 1000.0 + i, queue="q" if i % 2 else "celery", fail=i % 5 == 0)
    _fold(history, records)
    seen: list[str] = []
    before = None
    while True:
        page = history.tasks(TaskFilter(queue="q"), before=before, limit=20)
        if not page:
            break
        seen += [row.id for row in page]
        before = (page[-1].seen, page[-1].seq)
    assert seen == [f"t{i:03}" for i in range(129, -1, -1) if i % 2]
    failed = history.tasks(TaskFilter(state="FAILURE"), limit=100)
    assert len(failed) == 26
    assert history.state_counts() == {"SUCCESS": 104, "FAILURE": 26}
    assert [r.id for r in history.tasks(TaskFilter(search="t12"), limit=100)] == [
        f"t{i}" for i in range(129, 119, -1)
    ]
    assert [r.id for r in history.tasks(TaskFilter(since=1125.5), limit=100)] == [
        "t129", "t128", "t127", "t126"
    ]
    assert history.distinct("queue") == ["celery", "q"]


def test_retention_keeps_the_newest_tasks_and_their_counts(open_history: Opener) -> None:
    history = open_history(50)
    records: list[bytes] = []
    for i in range(80):
        records += _run(f"t{i:03}", 1000.0 + i)
    _fold(history, records)
    assert history.trim() == 30
    assert len(history.tasks(TaskFilter(), limit=1000)) == 50
    assert history.task("t029") is None and history.task("t030") is not None
    assert history.state_counts() == {"SUCCESS": 50}


def test_a_reopened_history_goes_on_from_its_cursor(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    history = History(path, 100)
    _fold(history, _run("a", 10.0))
    with pytest.raises(ConfigurationError, match="another dashboard uses the history file"):
        History(path, 100)  # two would fold every event twice
    history.close()
    again = History(path, 100)
    try:
        assert again.cursor() == "3"
        assert again.task("a") is not None
    finally:
        again.close()


def test_a_chords_tasks_are_found_by_its_id(open_history: Opener) -> None:
    history = open_history(100)
    records = []
    for n, member in enumerate(("h1", "h2")):
        records += [_event("task-received", member, 100.0 + n, args="(1,)", kwargs="{}",
                           root_id=member, parent_id=None, group_id="c1", chord_id="c1"),
                    _event("task-succeeded", member, 100.5 + n, result="1", runtime=0.1)]
    records += [
        _event("task-received", "j", 103.0, name="conveyor.chord_join", args="('c1',)",
               kwargs="{}", root_id="j", parent_id=None, group_id=None, chord_id="c1"),
        _event("task-received", "b", 104.0, args="([1, 1],)", kwargs="{}", root_id="j",
               parent_id="j"),
        _event("task-received", "other", 105.0, args="()", kwargs="{}", root_id="other"),
    ]
    _fold(history, records)
    found = history.chord("c1")
    assert [t.id for t in found] == ["h1", "h2", "j"]
    assert [(t.group_id, t.chord_id) for t in found[:2]] == [("c1", "c1")] * 2
    assert found[2].group_id is None
    member = history.task("h1")
    assert member is not None and member.chord_id == "c1"
    body = history.task("b")
    assert body is not None and body.chord_id is None and body.parent_id == "j"


def test_a_history_file_from_before_chord_ids_gains_the_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:  # the tasks table as the first release made it
        old.execute("CREATE TABLE tasks (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
                    " name TEXT, state TEXT NOT NULL, state_at REAL NOT NULL, seen REAL NOT"
                    " NULL, queue TEXT, worker TEXT, args TEXT, kwargs TEXT, result TEXT,"
                    " exception TEXT, traceback TEXT, received REAL, started REAL, finished"
                    " REAL, runtime REAL, retries INTEGER NOT NULL DEFAULT 0, eta REAL,"
                    " root_id TEXT, parent_id TEXT)")
        old.execute("INSERT INTO tasks (id, state, state_at, seen) VALUES ('a', 'SUCCESS', 1, 1)")
    history = History(path, 100)
    try:
        kept = history.task("a")
        assert kept is not None and kept.state == "SUCCESS" and kept.chord_id is None
        _fold(history, [_event("task-received", "h", 2.0, args="()", kwargs="{}",
                               chord_id="c9")])
        assert [t.id for t in history.chord("c9")] == ["h"]
    finally:
        history.close()


def test_masking_hides_values_not_shapes() -> None:
    everything = Masking(True)
    assert everything.args("(1, 'secret')") == "(•••, •••)"
    assert "secret" not in everything.kwargs("{'token': 'secret'}")
    named = Masking(["password"])
    assert named.kwargs("{'user': 'ada', 'password': 'hunter2'}") == (
        "{'user': 'ada', 'password': •••}"
    )
    assert named.kwargs("{'password': <object at 0x1>}") == "•••"  # unreadable: all hidden
    assert Masking(False).call("(1, 2)", "{'x': 3}") == "1, 2, x=3"


def test_users_and_the_loopback_rule() -> None:
    users = parse_users(["admin:pa:ss", "viewer:look,ops:x"])
    assert users == {"admin": "pa:ss", "viewer": "look", "ops": "x"}
    with pytest.raises(ValueError, match="user:password"):
        parse_users(["nopassword"])
    access = Access(users, frozenset({"viewer"}))
    header = "Basic " + base64.b64encode(b"admin:pa:ss").decode()
    assert access.user_of(header) == "admin"
    assert access.user_of("Basic " + base64.b64encode(b"admin:wrong").decode()) is None
    assert access.may_act("admin") and not access.may_act("viewer")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.raises(ConfigurationError, match=r"127\.0\.0\.1 only"):
        DashboardOptions(address="0.0.0.0").check()
    DashboardOptions(address="0.0.0.0", users=users).check()


def test_a_token_is_checked_as_a_bearer_header_or_its_cookie() -> None:
    token = "t" * 24
    access = Access(token=token)
    assert access.guarded and not Access().guarded
    assert access.token_user(f"Bearer {token}", None) == TOKEN_USER
    assert access.token_user("Bearer " + "x" * 24, None) is None
    assert access.token_user(None, access.cookie_of_token()) == TOKEN_USER
    assert access.token_user(None, token) is None  # the cookie holds a hash, not the token
    assert access.may_act(TOKEN_USER) and not Access(token=token, read_only=True).may_act(None)
    DashboardOptions(address="0.0.0.0", token=token).check()
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        DashboardOptions(address="0.0.0.0", token="short").check()
