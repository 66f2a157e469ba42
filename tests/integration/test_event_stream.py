"""Events stored by the broker (-E) survive a worker restart; conveyor events --dump."""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor

from ..support import run_cli, wait_for

APP = "tests.apps.observed"
ADD = "tests.apps.observed.add"
FAIL = "tests.apps.observed.fail"


@pytest.fixture
def client(worker_broker_url: str) -> Iterator[Conveyor]:
    app = Conveyor("client", broker=worker_broker_url)
    try:
        yield app
    finally:
        app.close()


def _dump(url: str) -> list[dict[str, Any]]:
    done = run_cli(url, "-A", APP, "events", "--dump", "--once")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _count(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((str(e["type"]), str(e.get("name", ""))) for e in events)


def test_events_survive_a_worker_restart(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    first = spawn_worker(APP, worker_broker_url, "-c", "1", "-E")
    assert [client.send_task(ADD, (i, 1)).get(timeout=20) for i in range(3)] == [1, 2, 3]
    with pytest.raises(ValueError):
        client.send_task(FAIL, ("x",)).get(timeout=20)
    wait_for(lambda: _count(_dump(worker_broker_url))[("task-failed", FAIL)] == 1, 15,
             what="the failure stored")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    second = spawn_worker(APP, worker_broker_url, "-c", "1", "-E")
    assert client.send_task(ADD, (5, 5)).get(timeout=20) == 10
    wait_for(lambda: _count(_dump(worker_broker_url))[("task-succeeded", ADD)] == 4, 15,
             what="the new worker's events stored beside the old ones")
    counts = _count(_dump(worker_broker_url))
    assert counts[("task-succeeded", ADD)] == 4
    assert counts[("task-started", ADD)] == 4
    assert counts[("task-failed", FAIL)] == 1
    assert sum(n for (kind, _), n in counts.items() if kind == "worker-online") == 2
    assert sum(n for (kind, _), n in counts.items() if kind == "worker-offline") == 1
    second.stop()


def test_no_events_are_stored_without_dash_e(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1")
    assert client.send_task(ADD, (1, 1)).get(timeout=20) == 2
    assert _dump(worker_broker_url) == []


def test_a_recycled_child_stores_its_last_events(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    # Each child runs 2 tasks and exits, well within the 200 ms between two flushes of
    # its buffer: what it still held when it exited must be stored, not lost with it.
    worker = spawn_worker(APP, worker_broker_url, "-c", "1", "-E", "--max-tasks-per-child", "2")
    assert [client.send_task(ADD, (i, 0)).get(timeout=20) for i in range(6)] == list(range(6))
    wait_for(lambda: _count(_dump(worker_broker_url))[("task-succeeded", ADD)] == 6, 10,
             what="every task's events stored")
    counts = _count(_dump(worker_broker_url))
    assert counts[("task-received", ADD)] == counts[("task-started", ADD)] == 6
    worker.stop()
