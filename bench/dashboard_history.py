"""The dashboard's task list with a million tasks in its history: server time per page.

Fills a history file with N tasks (20 task names, 3 queues, 4 workers, 2% failed) in
bulk, then times ``GET /tasks`` through the whole app (query, template, response) for
the first page, a page deep in the keyset, each filter, and the searches; then how
fast events are folded in (can the dashboard keep up with the workers?).

    .venv/bin/python bench/dashboard_history.py [--tasks 1000000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from starlette.testclient import TestClient

from conveyor import Conveyor
from conveyor.dashboard.app import Dashboard, create_app
from conveyor.dashboard.history import History

NAMES = [f"proj.tasks.job_{i:02}" for i in range(20)]
QUEUES = ["celery", "emails", "reports"]
WORKERS = [f"w{i}@host" for i in range(4)]


def fill(history: History, count: int, start: float) -> list[str]:
    db = history.db
    ids: list[str] = []
    batch = []
    for i in range(count):
        task_id = str(uuid.UUID(int=i + 1))
        ids.append(task_id)
        state = "FAILURE" if i % 50 == 7 else "SUCCESS"
        at = start + i * 0.01
        batch.append((task_id, NAMES[i % 20], state, at, at, QUEUES[i % 3], WORKERS[i % 4],
                      f"({i}, 'user-{i % 9973}@example.com')", at, at + 0.001, 0.001))
        if len(batch) == 50_000:
            _insert(db, batch)
            batch = []
    if batch:
        _insert(db, batch)
    db.execute("INSERT OR REPLACE INTO state_counts (state, n) VALUES ('SUCCESS', ?), "
               "('FAILURE', ?)", (count - count // 50, count // 50))
    db.execute("ANALYZE")
    return ids


def _insert(db, rows) -> None:  # type: ignore[no-untyped-def]
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO tasks (id, name, state, state_at, seen, queue, worker, args, kwargs,"
        " received, finished, runtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?)",
        rows,
    )
    db.execute("COMMIT")


def timed(client: TestClient, url: str, repeat: int) -> tuple[float, float, str]:
    times = []
    body = ""
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
        body = response.text
    return statistics.median(times) * 1000, max(times) * 1000, body


def fold_rate(path: Path, tasks: int) -> float:
    history = History(path, 10_000_000)
    records = []
    now = time.time()
    for i in range(tasks):
        task_id = uuid.uuid4().hex
        base = {"uuid": task_id, "name": NAMES[i % 20], "hostname": WORKERS[i % 4]}
        records += [
            {**base, "type": "task-received", "timestamp": now, "args": "(1, 2)",
             "kwargs": "{}", "queue": "celery", "retries": 0},
            {**base, "type": "task-started", "timestamp": now + 0.001},
            {**base, "type": "task-succeeded", "timestamp": now + 0.002, "result": "3",
             "runtime": 0.001},
        ]
    encoded = [(str(i + 1), json.dumps(r).encode()) for i, r in enumerate(records)]
    started = time.perf_counter()
    for i in range(0, len(encoded), 2000):
        history.fold(encoded[i : i + 2000])
    return len(encoded) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-dash-bench-"))
    history = History(workdir / "history.sqlite3", options.tasks * 2)
    started = time.perf_counter()
    ids = fill(history, options.tasks, time.time() - options.tasks * 0.01)
    print(f"filled {options.tasks:,} tasks in {time.perf_counter() - started:.1f} s")
    app = Conveyor("bench", broker="memory://")
    board = Dashboard(app, history)
    client = TestClient(create_app(board))
    middle = history.task(ids[len(ids) // 2])
    assert middle is not None
    deep = f"{middle.seen!r}_{middle.seq}"
    cases = {
        "first page": "/tasks",
        "a page half-way back (keyset)": f"/tasks?before={deep}",
        "state=FAILURE": "/tasks?state=FAILURE",
        "name= one of 20": f"/tasks?name={NAMES[3]}",
        "queue + worker": "/tasks?queue=emails&worker=w1@host",
        "failed, half-way back": f"/tasks?state=FAILURE&before={deep}",
        "since=1h": "/tasks?since=1h",
        "search: task id prefix": f"/tasks?q={ids[123_456 % len(ids)][:13]}",
        "search: argument text (recent match)": "/tasks?q=user-9972@",
        "search: argument text (no match: full scan)": "/tasks?q=nobody@nowhere",
        "overview": "/",
    }
    print(f"{'page':48} {'median ms':>10} {'max ms':>8}")
    for label, url in cases.items():
        median, worst, _ = timed(client, url, options.repeat if "full scan" not in label else 3)
        print(f"{label:48} {median:10.1f} {worst:8.1f}")
    rate = fold_rate(workdir / "fold.sqlite3", 20_000)
    print(f"fold: {rate:,.0f} events/s ({rate / 3:,.0f} tasks/s of 3 events each)")


if __name__ == "__main__":
    main()
