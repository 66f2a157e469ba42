"""The ``conveyor`` command line against a real Redis: the worker's flags and signals,
and the small commands (call, result, purge, status)."""

from __future__ import annotations

import json
import signal
import socket
import time
from types import ModuleType
from typing import Any

import pytest

from conveyor.stores.redis.keys import RedisKeys

from ..support import RedisServer, inflight_task_ids, publish_many, run_cli, wait_for

pytestmark = pytest.mark.redis

KEYS = RedisKeys("conveyor")


# the worker -------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["parent", "process group"])
def test_sigterm_is_a_warm_shutdown(
    target: str, tunable: ModuleType, redis_server: RedisServer, redis_url: str,
    spawn_worker: Any,
) -> None:
    r = redis_server.client()
    # No early give-back of prefetched tasks: the shutdown alone must return them.
    worker = spawn_worker("tests.apps.tunable", redis_url, "-c", "1",
                          env={"TEST_PREFETCH_RELEASE": "60"})
    calls = [(tunable.record, ("slow", 2.0))] + [(tunable.record, ("rest",))] * 6
    slow, *rest = publish_many(calls)
    wait_for(lambda: r.llen("started:slow") == 1, 5, what="the slow task to start")
    prefetched = inflight_task_ids(r) - {slow}
    assert prefetched, "the child leased tasks behind the slow one"

    signalled = time.monotonic()
    if target == "parent":
        worker.send_signal(signal.SIGTERM)
    else:
        worker.kill_group(signal.SIGTERM)  # as systemd does: every process gets it
    assert worker.wait(10) == 0
    assert time.monotonic() - signalled > 1.0, "the running task was waited for"
    assert r.hget("runs:slow", slow) == b"1" and r.lrange("done:slow", 0, -1) == [slow.encode()]
    assert r.hlen("runs:rest") == 0, "no new task started after SIGTERM"
    assert inflight_task_ids(r) == set()
    assert r.llen(KEYS.level("celery", 0)) == len(rest), "unstarted tasks went back"
    assert not r.exists(KEYS.redeliveries), "given back as never tried, not as after a crash"
    assert "warm shutdown" in worker.output()

    spawn_worker("tests.apps.tunable", redis_url, "-c", "1")
    wait_for(lambda: r.llen("done:rest") == len(rest), 5, what="a later worker to run the rest")
    assert [entry.split(b":")[0].decode() for entry in r.lrange("started:rest", 0, -1)] == rest
    assert all(count == b"1" for count in r.hvals("runs:rest"))


def test_worker_consumes_every_queue_named_with_dash_q(
    basic: ModuleType, redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.basic", redis_url, "-c", "1", "-Q", "a,b")
    on_a = basic.add.apply_async((1, 2), queue="a")
    on_b = basic.add.apply_async((3, 4), queue="b")
    on_c = basic.add.apply_async((5, 6), queue="c")
    assert (on_a.get(timeout=5), on_b.get(timeout=5)) == (3, 7)
    stats = {q.name: q for q in basic.app.broker.queues()}
    assert stats["c"].ready == 1 and on_c.state == "PENDING"
    assert stats["a"].ready == stats["b"].ready == 0


def test_worker_name_shows_in_status(redis_url: str, spawn_worker: Any) -> None:
    spawn_worker("tests.apps.basic", redis_url, "-c", "2", "-Q", "a,b", "-n", "probe@%h")
    name = f"probe@{socket.gethostname()}"

    shown = run_cli(redis_url, "-A", "tests.apps.basic", "status")
    assert shown.returncode == 0, shown.stderr
    assert name in shown.stdout

    as_json = run_cli(redis_url, "-A", "tests.apps.basic", "status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    (worker,) = json.loads(as_json.stdout)["workers"]
    assert worker["hostname"] == name
    assert worker["concurrency"] == 2 and worker["queues"] == ["a", "b"]


def test_max_tasks_per_child_recycles_children(
    tunable: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    worker = spawn_worker("tests.apps.tunable", redis_url, "-c", "1", "--max-tasks-per-child", "5")
    first_child = worker.children()
    results = tunable.record.delay_many([("recycle",)] * 12)
    for result in results:
        assert result.get(timeout=10) == result.id
    per_pid: dict[str, int] = {}
    for entry in r.lrange("started:recycle", 0, -1):
        pid = entry.decode().split(":")[1]
        per_pid[pid] = per_pid.get(pid, 0) + 1
    assert sorted(per_pid.values()) == [2, 5, 5], per_pid
    assert str(first_child[0]) in per_pid
    assert all(count == b"1" for count in r.hvals("runs:recycle"))
    assert worker.process.poll() is None


@pytest.mark.parametrize(
    "argv",
    [
        ["-A", "tests.apps.basic", "worker", "--bogus"],
        ["-A", "tests.apps.basic", "worker", "-c", "zero"],
        ["-A", "tests.apps.no_such_module", "worker"],
        ["-A", "tests.apps.basic:nothing", "worker"],
        ["-A", "tests.support", "worker"],
    ],
    ids=["wrong-flag", "bad-value", "missing-module", "missing-attribute", "no-app"],
)
def test_usage_errors_print_one_line_and_exit_2(argv: list[str], redis_url: str) -> None:
    done = run_cli(redis_url, *argv)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr


# the small commands -----------------------------------------------------------------------
def test_call_and_result(redis_url: str, spawn_worker: Any) -> None:
    spawn_worker("tests.apps.basic", redis_url, "-c", "1")
    called = run_cli(redis_url, "-A", "tests.apps.basic", "call", "tests.apps.basic.add",
                     "--args", "[2, 3]", "--wait", "--timeout", "5")
    assert called.returncode == 0, called.stderr
    task_id, value = called.stdout.split()
    assert value == "5"

    shown = run_cli(redis_url, "-A", "tests.apps.basic", "result", task_id)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"id": task_id, "state": "SUCCESS", "result": 5}

    failed = run_cli(redis_url, "-A", "tests.apps.basic", "call", "tests.apps.basic.boom",
                     "--kwargs", '{"message": "kaput"}', "--wait", "--timeout", "5")
    assert failed.returncode == 1, failed.stderr
    failed_id = failed.stdout.split()[0]
    assert failed.stderr == f"task {failed_id} FAILURE: ValueError: kaput\n"
    shown = run_cli(redis_url, "-A", "tests.apps.basic", "result", failed_id)
    assert shown.returncode == 1
    assert json.loads(shown.stdout) == {
        "id": failed_id, "state": "FAILURE", "result": "ValueError: kaput"
    }
    traceback = run_cli(redis_url, "-A", "tests.apps.basic", "result", failed_id, "--traceback")
    assert "ValueError: kaput" in traceback.stdout and "Traceback" in traceback.stdout
    assert traceback.returncode == 1


def test_purge_and_status(basic: ModuleType, redis_server: RedisServer, redis_url: str) -> None:
    basic.add.delay_many([(i, i) for i in range(7)])
    for _ in range(3):
        basic.add.apply_async((1, 1), countdown=3600)
    basic.add.apply_async((1, 1), queue="other")

    status = run_cli(redis_url, "-A", "tests.apps.basic", "status", "--json")
    assert status.returncode == 0, status.stderr
    queues = {q["name"]: q for q in json.loads(status.stdout)["queues"]}
    assert (queues["celery"]["ready"], queues["celery"]["scheduled"]) == (7, 3)
    assert json.loads(status.stdout)["workers"] == []
    table = run_cli(redis_url, "-A", "tests.apps.basic", "status")
    assert "celery" in table.stdout and "No workers alive." in table.stdout

    purged = run_cli(redis_url, "-A", "tests.apps.basic", "purge", "-f")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == "Purged 10 messages from celery."
    stats = {q.name: q for q in basic.app.broker.queues()}
    assert (stats["celery"].ready, stats["celery"].scheduled) == (0, 0)
    assert stats["other"].ready == 1, "other queues are left alone"
