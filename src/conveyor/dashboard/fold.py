"""Folding a batch of the event stream into the history's tables (history.py holds the
schema and the transaction). A batch is folded per task, not per event: one read of the
rows its tasks already have, then one write per task, the task's events in one
``executemany``, and the state counts and chart buckets as sums, so a batch of 2,000
events costs a few hundred statements rather than a dozen per event."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

__all__ = ["BUCKET_SECONDS", "FINAL", "STATES", "fold_batch", "fold_state"]

BUCKET_SECONDS = 5  # the width of one bar in the overview's charts
_SELECT_CHUNK = 500  # ids per "WHERE id IN (...)"

# An event's type, and the state it puts its task in (Celery's state names).
STATES = {
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-retried": "RETRY",
    "task-revoked": "REVOKED",
    "task-rejected": "REJECTED",
}
FINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED"})


def fold_state(current: str | None, current_at: float, new: str, at: float) -> bool:
    """Does an event of state ``new`` at ``at`` replace ``current``? Events of one task
    can reach the stream out of order (two processes flush their batches separately),
    so the later timestamp wins; at the same instant a final state beats a running one."""
    if current is None:
        return True
    if at != current_at:
        return at > current_at
    return new in FINAL or current not in FINAL


class _Task:
    """One task's changes within a batch."""

    __slots__ = ("events", "fields", "seen", "seq", "state", "state_at", "was")

    def __init__(self, found: tuple[Any, ...] | None) -> None:
        self.seq: int | None = None if found is None else int(found[0])
        self.was: str | None = None if found is None else str(found[1])
        self.state = self.was
        self.state_at = 0.0 if found is None else float(found[2])
        self.seen = float("inf") if found is None else float(found[3])
        self.fields: dict[str, Any] = {}
        self.events: list[tuple[str, float, str]] = []


def fold_batch(db: sqlite3.Connection, batch: Sequence[tuple[str, bytes]]) -> int:
    """Fold ``batch`` (inside the caller's transaction); returns how many tasks are new."""
    by_task: dict[str, list[tuple[str, float, dict[str, Any], str]]] = defaultdict(list)
    for _, body in batch:
        try:
            event = json.loads(body)
        except ValueError:
            continue  # not ours to judge: `conveyor events` shows it as it is
        if not isinstance(event, dict):
            continue
        kind = str(event.get("type", ""))
        task_id = event.get("uuid")
        if kind.startswith("worker-"):
            _fold_worker(db, kind, event)
        elif kind in STATES and isinstance(task_id, str):
            at = float(event.get("timestamp") or time.time())
            by_task[task_id].append((kind, at, event, body.decode("utf-8", "replace")))
    if not by_task:
        return 0
    found = _existing(db, list(by_task))
    counts: Counter[str] = Counter()
    buckets: defaultdict[int, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    added = 0
    event_rows: list[tuple[int, str, float, str]] = []
    for task_id, events in by_task.items():
        task = _Task(found.get(task_id))
        for kind, at, event, raw in events:
            state = STATES[kind]
            if fold_state(task.state, task.state_at, state, at):
                task.state, task.state_at = state, at
            task.seen = min(task.seen, at)
            task.fields.update(_fields(kind, event, at))
            _count_bucket(buckets, kind, event, at)
            task.events.append((kind, at, raw))
        if task.state != task.was:
            counts[str(task.state)] += 1
            if task.was is not None:
                counts[task.was] -= 1
        seq = _write(db, task_id, task)
        added += task.seq is None
        event_rows += [(seq, kind, at, raw) for kind, at, raw in task.events]
    db.executemany(
        "INSERT INTO task_events (task_seq, type, at, body) VALUES (?, ?, ?, ?)", event_rows
    )
    db.executemany(
        "INSERT INTO state_counts (state, n) VALUES (?, ?) "
        "ON CONFLICT (state) DO UPDATE SET n = n + excluded.n",
        [(state, n) for state, n in counts.items() if n],
    )
    db.executemany(
        "INSERT INTO buckets (bucket, succeeded, failed, runtime_sum) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (bucket) DO UPDATE SET succeeded = succeeded + excluded.succeeded, "
        "failed = failed + excluded.failed, runtime_sum = runtime_sum + excluded.runtime_sum",
        [(bucket, int(s), int(f), r) for bucket, (s, f, r) in buckets.items()],
    )
    return added


def _existing(db: sqlite3.Connection, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(ids), _SELECT_CHUNK):
        chunk = ids[start : start + _SELECT_CHUNK]
        marks = ", ".join("?" * len(chunk))
        for seq, task_id, state, state_at, seen in db.execute(
            f"SELECT seq, id, state, state_at, seen FROM tasks WHERE id IN ({marks})", chunk
        ):
            found[str(task_id)] = (seq, state, state_at, seen)
    return found


def _write(db: sqlite3.Connection, task_id: str, task: _Task) -> int:
    values = {**task.fields, "state": task.state, "state_at": task.state_at, "seen": task.seen}
    if task.seq is None:
        columns = ", ".join(["id", *values])
        marks = ", ".join("?" * (len(values) + 1))
        cursor = db.execute(
            f"INSERT INTO tasks ({columns}) VALUES ({marks})", (task_id, *values.values())
        )
        return int(cursor.lastrowid or 0)
    assignments = ", ".join(f"{name} = ?" for name in values)
    db.execute(f"UPDATE tasks SET {assignments} WHERE seq = ?", (*values.values(), task.seq))
    return task.seq


def _fields(kind: str, event: dict[str, Any], at: float) -> dict[str, Any]:
    """The columns each kind of event carries."""
    changes: dict[str, Any] = {}
    if event.get("name"):
        changes["name"] = event["name"]
    if event.get("hostname"):
        changes["worker"] = event["hostname"]
    if kind == "task-received":
        changes.update(
            received=at,
            args=_text(event.get("args")),
            kwargs=_text(event.get("kwargs")),
            retries=int(event.get("retries") or 0),
            eta=event.get("eta"),
            root_id=event.get("root_id"),
            parent_id=event.get("parent_id"),
            group_id=event.get("group_id"),
            chord_id=event.get("chord_id"),
        )
        if event.get("queue"):
            changes["queue"] = event["queue"]
    elif kind == "task-started":
        changes["started"] = at
    elif kind == "task-succeeded":
        changes.update(finished=at, runtime=event.get("runtime"), result=_text(event.get("result")))
    else:  # failed, retried, revoked, rejected
        changes["exception"] = str(
            event.get("exception") or event.get("reason") or kind[len("task-") :]
        )
        if event.get("traceback"):
            changes["traceback"] = str(event["traceback"])
        if kind == "task-failed":
            changes.update(finished=at, runtime=event.get("runtime"))
    return changes


def _count_bucket(
    buckets: defaultdict[int, list[float]], kind: str, event: dict[str, Any], at: float
) -> None:
    if kind not in ("task-succeeded", "task-failed"):
        return
    runtime = event.get("runtime")
    bucket = buckets[int(at // BUCKET_SECONDS)]
    bucket[0 if kind == "task-succeeded" else 1] += 1
    bucket[2] += float(runtime) if isinstance(runtime, int | float) else 0.0


def _fold_worker(db: sqlite3.Connection, kind: str, event: dict[str, Any]) -> None:
    hostname = event.get("hostname")
    if not isinstance(hostname, str):
        return
    info = event.get("info") if isinstance(event.get("info"), dict) else {}
    db.execute(
        "INSERT INTO workers (hostname, info, last, online) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (hostname) DO UPDATE SET info = excluded.info, "
        "last = max(last, excluded.last), online = excluded.online",
        (
            hostname,
            json.dumps(info, default=repr),
            float(event.get("timestamp") or 0.0),
            0 if kind == "worker-offline" else 1,
        ),
    )


def _text(value: Any) -> str | None:
    """Events carry arguments and results as reprs (cut at 1024 characters, as Celery's
    ``argsrepr``); kept as they came."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=repr)
