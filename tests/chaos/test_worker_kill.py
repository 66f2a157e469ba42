"""Promises 1 and 2 with real processes: SIGKILL loses no task, and a long task on a live
worker is never handed to a second one."""

from __future__ import annotations

import os
import signal
import time
from types import ModuleType
from typing import Any

import pytest

from conveyor.stores.redis.keys import RedisKeys

from ..support import RedisServer, inflight_task_ids, process_gone, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

TASKS = 2000


@pytest.mark.parametrize("target", ["process group", "parent only"])
def test_sigkill_of_a_prefork_worker_loses_no_task(
    target: str, basic: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    worker = spawn_worker("tests.apps.basic", redis_url, "-c", "2")
    children = worker.children()
    assert len(children) == 2
    ids = {res.id for res in basic.record.delay_many([("k", 0.002)] * TASKS)}
    wait_for(lambda: r.llen("done:k") >= 300, 20, what="300 tasks done")

    if target == "process group":
        worker.kill_group(signal.SIGKILL)
    else:
        worker.send_signal(signal.SIGKILL)  # the children must die with it (PDEATHSIG)
    killed_at = time.monotonic()
    worker.wait(5)
    for pid in children:
        wait_for(lambda pid=pid: process_gone(pid), 5, what=f"child {pid} to die with its parent")

    # What the broker saw at the kill: a task started and not acknowledged was running.
    r.ping()
    done_before = r.llen("done:k")
    assert done_before < TASKS, "the kill came too late to interrupt anything"
    held = inflight_task_ids(r)
    assert held, "the killed worker held no deliveries"
    # A run is counted (runs:k) before anything else the task does.
    running_at_kill = {task_id.decode() for task_id in r.hkeys("runs:k")} & held
    assert len(running_at_kill) <= 2, f"more running than children: {running_at_kill} ({held})"

    spawn_worker("tests.apps.basic", redis_url, "-c", "2")

    def done() -> set[str]:
        return {task_id.decode() for task_id in r.lrange("done:k", 0, -1)}

    wait_for(lambda: done() == ids, 30, what=f"all {TASKS} tasks to complete on the new worker")
    recovered_in = time.monotonic() - killed_at
    assert recovered_in < 30, f"recovery took {recovered_in:.1f}s"

    def settled() -> bool:
        # Acks and results travel behind each task: wait for the last ones to land.
        pipe = r.pipeline()
        for task_id in ids:
            pipe.exists(RedisKeys("conveyor").result(task_id))
        return all(pipe.execute()) and not inflight_task_ids(r)

    wait_for(settled, 5, what="every result stored and every delivery acked")
    runs = {k.decode(): int(v) for k, v in r.hgetall("runs:k").items()}
    assert set(runs) == ids
    twice = {task_id for task_id, count in runs.items() if count > 1}
    assert twice <= running_at_kill, (
        f"ran twice but was not running at the kill: {twice - running_at_kill} "
        f"(held at the kill: {held}; running: {running_at_kill})"
    )
    assert max(runs.values()) <= 2


def test_sigkill_of_one_child_requeues_its_task_at_once(
    tunable: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    worker = spawn_worker("tests.apps.tunable", redis_url, "-c", "2")
    children = worker.children()
    result = tunable.record.delay("child", 2.0)
    wait_for(lambda: r.llen("started:child") == 1, 10, what="the task to start")
    victim = int(r.lindex("started:child", 0).split(b":")[1])
    assert victim in children

    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    # The default lease is 10 s: a rerun within 3 s means the supervisor requeued it.
    wait_for(lambda: r.llen("started:child") == 2, 3, what="the task to run again")
    assert time.monotonic() - killed_at < 3
    wait_for(lambda: len(worker.children()) == 2 and victim not in worker.children(), 5,
             what="a new child in place of the killed one")
    survivor = next(pid for pid in children if pid != victim)
    assert survivor in worker.children(), "the other child was left alone"

    assert result.get(timeout=10) == result.id
    assert r.hget("runs:child", result.id) == b"2"
    assert worker.process.poll() is None
    assert "killed by SIGKILL" in worker.output()


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_task_three_times_longer_than_the_lease_runs_once(
    pool: str, tunable: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    env = {"TEST_LEASE_SECONDS": "1.0"}
    spawn_worker("tests.apps.tunable", redis_url, "-P", pool, "-c", "1", "-n", "a@%h", env=env)
    spawn_worker("tests.apps.tunable", redis_url, "-P", pool, "-c", "1", "-n", "b@%h", env=env)
    long = tunable.record.delay("long", 3.0)
    wait_for(lambda: r.llen("started:long") == 1, 5, what="the long task to start")

    # The other worker is alive and consuming while the long task outlives its lease
    # three times over; it would take the long task too if the lease lapsed.
    quick = tunable.record.delay_many([("quick",)] * 20)
    wait_for(lambda: r.hlen("runs:quick") == 20, 5, what="quick tasks on the other worker")

    assert long.get(timeout=10) == long.id
    # One more round on both workers, so a late duplicate would have shown by now.
    for res in tunable.record.delay_many([("after",)] * 4):
        res.get(timeout=5)
    assert r.hgetall("runs:long") == {long.id.encode(): b"1"}
    assert r.llen("started:long") == 1
    assert all(r.hget("runs:quick", res.id) == b"1" for res in quick)
