"""inspect and control against real workers, on Redis and on SQLite.

The workers run CPU-bound tasks on every child while they are inspected: the
supervisor answers (it runs no task), so the answers come within the default 1 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from conveyor import Conveyor

from ..support import run_cli, wait_for

APP = "tests.apps.observed"
SPIN = "tests.apps.observed.spin"
ADD = "tests.apps.observed.add"


@pytest.fixture
def client(worker_broker_url: str) -> Iterator[Conveyor]:
    app = Conveyor("client", broker=worker_broker_url)
    try:
        yield app
    finally:
        app.close()


def _running(app: Conveyor, worker: str) -> list[dict[str, Any]]:
    answers = app.control.inspect(destination=[worker]).active() or {}
    return list(answers.get(worker, []))


def _processes(app: Conveyor, worker: str) -> list[int]:
    stats = app.control.inspect(destination=worker).stats() or {}
    return list(stats.get("pool", {}).get("processes", []))


def test_inspect_answers_while_every_child_spins(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "2", "-n", "busy@%h", "--prefetch-multiplier", "1")
    name = f"busy@{_host()}"
    ids = {client.send_task(SPIN, (6.0,)).id for _ in range(2)}
    wait_for(lambda: len(_running(client, name)) == 2, 15, what="both children busy")
    # Both children hold the GIL in a busy loop now; the default 1 s timeout still hears
    # the worker, with the tasks' names, arguments and pids.
    active = client.control.inspect().active()
    assert active is not None and set(active) == {name}
    assert {task["id"] for task in active[name]} == ids
    for task in active[name]:
        assert task["name"] == SPIN and task["args"] == [6.0] and task["time_start"] > 0
    assert len({task["worker_pid"] for task in active[name]}) == 2
    assert client.control.ping() == [{name: {"ok": "pong"}}]
    registered = client.control.inspect().registered()
    assert registered is not None and SPIN in registered[name] and ADD in registered[name]
    stats = client.control.inspect().stats()
    assert stats is not None and stats[name]["total"] == {SPIN: 2}
    assert stats[name]["pool"]["max-concurrency"] == 2
    queues = client.control.inspect().active_queues()
    assert queues is not None and [q["name"] for q in queues[name]] == ["celery"]
    found = client.control.inspect().query_task(*ids)
    assert found is not None and set(found[name]) == ids
    assert all(state == "active" for state, _ in found[name].values())


def test_reserved_and_revoked(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    # Queued before the worker starts, so its one child leases all three at once: the
    # first runs, the others wait leased to it (kept: no give-back behind a slow task).
    ids = [client.send_task(SPIN, (4.0,)).id for _ in range(3)]
    env = {"OBSERVED_RELEASE": "60"}
    spawn_worker(APP, worker_broker_url, "-c", "1", "-n", "one@%h", env=env)
    name = f"one@{_host()}"
    wait_for(lambda: len(_running(client, name)) == 1, 15, what="the first task running")
    running = _running(client, name)[0]["id"]
    reserved = client.control.inspect().reserved()
    assert reserved is not None
    assert sorted(t["id"] for t in reserved[name]) == sorted(set(ids) - {running})
    assert all(t["name"] == SPIN for t in reserved[name])
    assert client.control.inspect().scheduled() == {name: []}  # ETAs wait in the broker
    found = client.control.inspect().query_task(ids) or {}
    assert sorted(state for state, _ in found[name].values()) == ["active", "reserved", "reserved"]
    client.control.revoke("not-a-real-task")
    wait_for(
        lambda: "not-a-real-task" in (client.control.inspect().revoked() or {}).get(name, []),
        10,
        what="the revocation reaching the worker",
    )


def test_pool_grows_and_shrinks(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1", "-n", "grow@%h", "--prefetch-multiplier", "1")
    name = f"grow@{_host()}"
    assert len(_processes(client, name)) == 1
    assert client.control.pool_grow(2, reply=True) == [{name: {"ok": "pool will grow by 2"}}]
    wait_for(lambda: len(_processes(client, name)) == 3, 15, what="three processes")
    # Three tasks run at once now: the new children consume.
    for _ in range(3):
        client.send_task(SPIN, (4.0,))
    wait_for(lambda: len(_running(client, name)) == 3, 15, what="three tasks running at once")
    assert client.control.pool_shrink(2, reply=True) == [{name: {"ok": "pool will shrink by 2"}}]
    wait_for(lambda: len(_processes(client, name)) == 1, 20, what="back to one process")
    refused = client.control.pool_shrink(1, reply=True)
    assert refused is not None and "error" in refused[0][name]


def test_a_queue_is_added_and_consumed(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "2", "-Q", "first", "-n", "queues@%h")
    name = f"queues@{_host()}"
    waiting = client.send_task(ADD, (2, 3), queue="second")
    replies = client.control.add_consumer("second", reply=True)
    assert replies == [{name: {"ok": "add consumer second"}}]
    assert waiting.get(timeout=20) == 5
    queues = client.control.inspect().active_queues() or {}
    assert [q["name"] for q in queues[name]] == ["first", "second"]
    assert client.control.cancel_consumer("first", reply=True) == [
        {name: {"ok": "no longer consuming from first"}}
    ]
    queues = client.control.inspect().active_queues() or {}
    assert [q["name"] for q in queues[name]] == ["second"]
    assert client.send_task(ADD, (1, 1), queue="second").get(timeout=20) == 2


def test_threads_pool_answers_and_adds_a_queue(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-P", "threads", "-c", "2", "-n", "threads@%h")
    name = f"threads@{_host()}"
    running = client.send_task(SPIN, (3.0,)).id
    wait_for(lambda: len(_running(client, name)) == 1, 15, what="a task running")
    assert _running(client, name)[0]["id"] == running
    # The threads pool grows as the prefork one does (a new thread, a new consumer).
    assert client.control.pool_grow(1, reply=True) == [{name: {"ok": "pool will grow by 1"}}]
    stats = client.control.inspect().stats() or {}
    assert stats[name]["pool"]["max-concurrency"] == 3
    waiting = client.send_task(ADD, (20, 22), queue="later")
    client.control.add_consumer("later", reply=True)
    assert waiting.get(timeout=20) == 42


def test_time_limit_reaches_new_children(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1", "-n", "limits@%h")
    name = f"limits@{_host()}"
    replies = client.control.time_limit(SPIN, soft=None, hard=1.0, reply=True)
    assert replies == [{name: {"ok": "time limits set successfully"}}]
    # The child was replaced to pick the limit up; a 10 s spin now dies at 1 s.
    result = client.send_task(SPIN, (10.0,))
    with pytest.raises(Exception, match="time limit"):
        result.get(timeout=30)


def test_dead_worker_is_absent_and_shutdown_stops_a_worker(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    doomed = spawn_worker(APP, worker_broker_url, "-c", "1", "-n", "doomed@%h")
    survivor = spawn_worker(APP, worker_broker_url, "-c", "1", "-n", "survivor@%h")
    host = _host()
    doomed.kill_group()
    doomed.wait(10)
    # Its heartbeat has not expired yet: it is asked, does not answer, and is absent.
    assert client.control.ping(timeout=1.0) == [{f"survivor@{host}": {"ok": "pong"}}]
    assert client.control.shutdown(destination=[f"survivor@{host}"], reply=True) == [
        {f"survivor@{host}": {"ok": "shutting down"}}
    ]
    assert survivor.wait(30) == 0
    assert client.control.inspect(timeout=0.5).ping() is None


def test_cli_inspect_and_control(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1", "-n", "cli@%h")
    name = f"cli@{_host()}"
    done = run_cli(worker_broker_url, "-A", APP, "inspect", "ping", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {name: {"ok": "pong"}}
    done = run_cli(worker_broker_url, "-A", APP, "inspect", "registered", "-d", name)
    assert done.returncode == 0, done.stderr
    assert f"->  {name}: OK" in done.stdout and SPIN in done.stdout
    done = run_cli(worker_broker_url, "-A", APP, "control", "pool_grow", "1", "--json")
    assert json.loads(done.stdout) == {name: {"ok": "pool will grow by 1"}}
    wait_for(lambda: len(_processes(client, name)) == 2, 15, what="two processes")
    done = run_cli(worker_broker_url, "-A", APP, "control", "rate_limit", ADD, "5/s")
    assert done.returncode == 0 and client.coordinator.rate_limits() == {ADD: "5/s"}
    done = run_cli(worker_broker_url, "-A", APP, "inspect", "ping", "-d", "nobody@x")
    assert done.returncode == 1
    assert "No nodes replied within time constraint" in done.stderr
    done = run_cli(worker_broker_url, "-A", APP, "control", "pool_grow", "many")
    assert done.returncode == 2 and "'many' is not a valid int" in done.stderr
    done = run_cli(worker_broker_url, "-A", APP, "control", "time_limit", SPIN, "1")
    assert done.returncode == 2 and "time_limit takes TASK_NAME SOFT HARD" in done.stderr
    done = run_cli(worker_broker_url, "-A", APP, "inspect", "query_task")
    assert done.returncode == 2 and "needs one or more task ids" in done.stderr


def _host() -> str:
    import socket

    return socket.gethostname()


def test_scheduled_lists_each_eta_task_once_over_the_workers(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    """ETA tasks wait in the broker, not in a worker: ``scheduled`` lists each once,
    under the first (by name) of the live workers consuming its queue, in Celery's
    shape; the union over workers is every task waiting for its ETA."""
    spawn_worker(APP, worker_broker_url, "-P", "threads", "-c", "1", "-n", "a-sched@%h")
    spawn_worker(APP, worker_broker_url, "-P", "threads", "-c", "1", "-n", "b-sched@%h",
                 "-Q", "celery,later")
    first, second = f"a-sched@{_host()}", f"b-sched@{_host()}"
    wait_for(lambda: len(client.control.ping()) == 2, 15, what="both workers listed")
    sent = time.time()
    soon = client.send_task(ADD, (1, 2), countdown=60)
    later = client.send_task(ADD, (3, 4), countdown=120, priority=3)
    other = client.send_task(ADD, (5, 6), countdown=60, queue="later")
    client.send_task(ADD, (7, 8)).get(timeout=20)  # not scheduled: runs now
    answers = client.control.inspect().scheduled()
    assert answers is not None and set(answers) == {first, second}
    # "celery" is consumed by both: the first by name lists it; "later" only by b.
    assert [item["request"]["id"] for item in answers[first]] == [soon.id, later.id]
    assert [item["request"]["id"] for item in answers[second]] == [other.id]
    by_id = {item["request"]["id"]: item for items in answers.values() for item in items}
    eta = datetime.fromisoformat(by_id[later.id]["eta"]).timestamp()
    assert sent + 119 < eta < time.time() + 121
    assert by_id[later.id]["priority"] == 3
    request = by_id[soon.id]["request"]
    assert request["name"] == ADD and request["args"] == [1, 2]
    assert request["delivery_info"]["routing_key"] == "celery"
    assert client.control.inspect(destination=[second]).scheduled() == {
        second: answers[second]
    }
    found = client.control.inspect().query_task(other.id)
    assert found == {first: {}, second: {other.id: ["scheduled", by_id[other.id]["request"]]}}
    client.control.revoke([soon.id, later.id, other.id])


def test_broadcast_purge_and_the_cli_timeout(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    # The worker consumes a queue nobody sends to, so what goes to "celery" waits.
    spawn_worker(APP, worker_broker_url, "-P", "threads", "-c", "1", "-n", "bc@%h", "-Q", "idle")
    name = f"bc@{_host()}"
    wait_for(lambda: client.control.ping() == [{name: {"ok": "pong"}}], 15, what="listed")
    assert client.control.broadcast("ping", reply=True) == [{name: {"ok": "pong"}}]
    assert client.control.broadcast("pool_grow", {"n": 0}, reply=True) == [
        {name: {"error": "n must be at least 1, got 0"}}
    ]
    assert client.control.broadcast("no_such_command", reply=True) == [
        {name: {"error": "unknown command 'no_such_command'"}}
    ]
    assert client.control.broadcast("ping") is None  # no reply asked for
    for i in range(3):
        client.send_task(ADD, (i, i))
    client.send_task(ADD, (9, 9), countdown=60)
    assert client.control.purge() == 4  # waiting and scheduled
    assert sum(q.ready + q.scheduled for q in client.broker.queues()) == 0
    # --timeout bounds the wait; answers that all came end it early
    started = time.monotonic()
    done = run_cli(worker_broker_url, "-A", APP, "inspect", "ping", "--timeout", "5", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {name: {"ok": "pong"}}
    assert time.monotonic() - started < 4.5
    done = run_cli(worker_broker_url, "-A", APP, "control", "pool_grow", "1", "-t", "0")
    assert done.returncode == 2 and "'-t' / '--timeout': 0.0 is not in the range" in done.stderr
