"""A Redis restart under a running worker: with AOF on, nothing is lost and the worker
goes on by itself."""

from __future__ import annotations

import signal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conveyor.stores.redis.keys import RedisKeys

from ..support import RedisServer, connected, free_port, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.redis]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "crash"])
def test_worker_rides_out_a_redis_restart(
    stop_signal: int, basic: ModuleType, tmp_path: Path, spawn_worker: Any
) -> None:
    directory = tmp_path / "aof"
    directory.mkdir()
    server = RedisServer(directory, free_port(), appendonly=True)
    server.start()
    try:
        with connected(basic.app, server.url):
            r = server.client()
            worker = spawn_worker("tests.apps.basic", server.url, "-c", "2")
            before = basic.add.delay_many([(i, 1) for i in range(200)])
            assert [res.get(timeout=10) for res in before] == [i + 1 for i in range(200)]

            # Sent just before Redis goes: some run, some wait, some are mid-flight.
            during = basic.sleep_for.delay_many([(0.01,)] * 200)
            waiting = RedisKeys("conveyor").level("celery", 0)
            wait_for(lambda: r.llen(waiting) < 190, 5, what="work under way")
            server.stop(stop_signal)
            wait_for(lambda: "broker connection lost" in worker.output(), 5,
                     what="the worker to notice Redis is gone")
            worker_children = worker.children()
            server.start()  # same port, same directory: the AOF brings the data back

            after = basic.add.delay_many([(i, 2) for i in range(200)])
            assert [res.get(timeout=30) for res in after] == [i + 2 for i in range(200)]
            assert [res.get(timeout=30) for res in during] == [0.01] * 200
            # Finished tasks are not run again: their acks are resent after the restart.
            # Only a task running at that moment (one per child) may run twice.
            log = worker.output()
            runs = [log.count(f"sleep_for[{res.id}] succeeded") for res in during]
            assert min(runs) == 1
            assert sum(n > 1 for n in runs) <= 2, runs
            assert [res.get(timeout=5) for res in before] == [i + 1 for i in range(200)]
            assert worker.process.poll() is None
            assert worker.children() == worker_children, "the children reconnected themselves"
    finally:
        server.stop()
