"""Results behind AMQP acks under real crashes (docs/architecture.md, "Results behind
AMQP acks"): a prefork worker on RabbitMQ with its results in Redis is SIGKILLed mid-
drain, and the results links of a draining worker are dropped by Redis again and again.
No task is lost, no acked task loses its result, and only a task that had not settled
at the kill runs twice."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import pytest
import redis

from conveyor.stores.redis.keys import RedisKeys

from ..apps import amqp_seed
from ..support import process_gone, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.redis, pytest.mark.timeout(240)]

APP = "tests.apps.amqp_seed"
TASKS = 1500


def stored(r: redis.Redis, ids: set[str]) -> set[str]:
    """The task ids whose final result is in the backend."""
    ordered = sorted(ids)
    pipe = r.pipeline()
    for task_id in ordered:
        pipe.exists(RedisKeys("conveyor").result(task_id))
    return {task_id for task_id, found in zip(ordered, pipe.execute(), strict=True) if found}


def test_sigkill_mid_drain_loses_no_task_and_no_result_of_an_acked_task(
    seed: dict[str, str], redis_url: str, spawn_worker: Callable[..., object]
) -> None:
    r = redis.Redis.from_url(redis_url)
    worker = spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "2", env=seed)
    children = worker.children()  # type: ignore[attr-defined]
    ids = {res.id for res in amqp_seed.record.delay_many([("k", 0.002)] * TASKS)}
    wait_for(lambda: r.llen("done:k") >= 300, 60, what="300 tasks done")
    worker.kill_group(signal.SIGKILL)  # type: ignore[attr-defined]
    worker.wait(5)  # type: ignore[attr-defined]
    for pid in children:
        wait_for(lambda pid=pid: process_gone(pid), 5, what=f"child {pid} to die")

    # What Redis holds now is all the killed worker ever stored (its sockets are gone).
    started = {task_id.decode() for task_id in r.hkeys("runs:k")}
    assert len(started) < TASKS, "the kill came too late to interrupt anything"
    unsettled = started - stored(r, ids)  # began, and no result landed: may run again

    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "2", env=seed)
    # Every task has its result: an acked task whose result was lost would never run
    # again, so its result would be missing here for good.
    wait_for(lambda: stored(r, ids) == ids, 90, what=f"all {TASKS} results")
    runs = {k.decode(): int(v) for k, v in r.hgetall("runs:k").items()}
    assert set(runs) == ids
    twice = {task_id for task_id, count in runs.items() if count > 1}
    assert twice <= unsettled, f"ran twice though its result was stored: {twice - unsettled}"
    assert len(unsettled) <= 2, f"more unsettled than children running tasks: {unsettled}"
    assert max(runs.values()) <= 2


def test_results_links_dropped_again_and_again_mid_drain_lose_no_result(
    seed: dict[str, str], redis_url: str, spawn_worker: Callable[..., object]
) -> None:
    """CLIENT KILL of the results links (the connections that run the store script) every
    50 ms while a worker drains: writes in flight are sent again on the next one."""
    r = redis.Redis.from_url(redis_url)
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "2", env=seed)
    ids = {res.id for res in amqp_seed.record.delay_many([("d", 0.001)] * 600)}
    stop = threading.Event()
    killed = 0

    def kill_links() -> None:
        nonlocal killed
        admin = redis.Redis.from_url(redis_url)
        while not stop.wait(0.05):
            for client in admin.client_list():
                if client.get("cmd") in ("evalsha", "eval"):
                    killed += int(admin.client_kill_filter(_id=client["id"]) or 0)

    killer = threading.Thread(target=kill_links)
    killer.start()
    try:
        wait_for(lambda: r.llen("done:d") >= 600, 120, what="every task to run")
    finally:
        stop.set()
        killer.join(10)
    assert killed > 0
    wait_for(lambda: stored(r, ids) == ids, 60, what="every result, after the reconnects")
    states = {amqp_seed.app.AsyncResult(task_id).state for task_id in sorted(ids)[:50]}
    assert states == {"SUCCESS"}
