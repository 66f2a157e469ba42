"""Promises 3 and 8 on a real Redis and a real prefork worker: scheduled tasks wait in
the broker, not in worker memory, and one slow task holds no quick ones hostage."""

from __future__ import annotations

import signal
import time
from types import ModuleType
from typing import Any

import pytest

from conveyor.stores.redis.keys import RedisKeys

from ..support import RedisServer, publish_many, rss_kib, wait_for

pytestmark = pytest.mark.redis

KEYS = RedisKeys("conveyor")
SCHEDULED = 100_000


def test_countdown_tasks_wait_in_redis_not_in_worker_memory(
    basic: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    worker = spawn_worker("tests.apps.basic", redis_url, "-c", "2")
    pids = [worker.pid, *worker.children()]

    def settle() -> None:
        # Enough rounds that every child has fetched, run, acked and stored many times.
        for _ in range(3):
            for res in basic.add.delay_many([(i, i) for i in range(200)]):
                res.get(timeout=10)

    settle()
    before = rss_kib(pids)

    for _ in range(SCHEDULED // 10_000):
        publish_many([(basic.record, ("later",))] * 10_000, countdown=3600)
    assert r.zcard(KEYS.eta("celery")) == SCHEDULED
    settle()  # the workers fetch again and again with 100,000 ETAs in the broker

    after = rss_kib(pids)
    assert [worker.pid, *worker.children()] == pids
    assert after - before < 3 * 1024, f"worker RSS grew {after - before} KiB"
    (stats,) = basic.app.broker.queues()
    assert (stats.ready, stats.scheduled) == (0, SCHEDULED)
    assert r.hlen("runs:later") == 0
    assert r.zcard(KEYS.eta("celery")) == SCHEDULED

    sent = time.time()
    soon = basic.record.apply_async(("soon",), countdown=1)
    soon.get(timeout=5)
    started = float(r.lindex("started:soon", 0).split(b":")[1])
    assert 1.0 <= started - sent <= 1.1, f"countdown=1 started after {started - sent:.3f}s"
    assert r.zcard(KEYS.eta("celery")) == SCHEDULED


def test_one_slow_task_holds_no_quick_ones_hostage(
    basic: ModuleType, redis_server: RedisServer, redis_url: str, spawn_worker: Any
) -> None:
    r = redis_server.client()
    worker = spawn_worker("tests.apps.basic", redis_url, "-c", "2")
    # One bulk send: the child that takes the sleeper also prefetches quick tasks behind it.
    publish_many([(basic.record, ("slow", 10.0))] + [(basic.record, ("quick",))] * 100)
    sent = time.monotonic()
    wait_for(lambda: r.hlen("runs:quick") == 100 and r.llen("done:quick") == 100, 5,
             what="100 quick tasks behind a 10 s one")
    assert time.monotonic() - sent < 5
    assert r.hlen("runs:slow") == 1 and r.llen("done:slow") == 0, "the sleeper is still running"
    worker.kill_group(signal.SIGKILL)  # not worth waiting 10 s for the sleeper
