"""The worker-level contract: a real worker on every broker keeps promises 1-3.

Redis, Redis Cluster and SQLite run real ``conveyor worker`` processes, killed for real:
prefork, and again the asyncio pool (``-P asyncio``: its sync tasks run on its thread
pool, beside the event loop), and on Redis the gevent pool (``-P gevent``). memory://
cannot cross processes, so its worker is the threads pool in this process (there is no
process of its own to SIGKILL, so it skips that test).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.worker.main import Worker
from conveyor.worker.pools import run_in_process

from ..apps import contract
from ..support import connected, wait_for

pytestmark = pytest.mark.timeout(60)


class ThreadWorker:
    """The threads pool of a Worker, run in a thread of this process (for memory://)."""

    def __init__(self, app: Conveyor, concurrency: int) -> None:
        self.app = app
        self.worker = Worker(
            app, pool="threads", concurrency=concurrency, hostname=f"t-{uuid.uuid4().hex[:8]}@%h"
        )
        self.thread = threading.Thread(
            target=run_in_process, args=(self.worker, concurrency), daemon=True
        )

    def start(self) -> ThreadWorker:
        self.thread.start()
        hostname = self.worker.hostname
        wait_for(
            lambda: any(w["hostname"] == hostname for w in self.app.coordinator.workers()),
            10,
            what="the thread worker to be ready",
        )
        return self

    def stop(self) -> None:
        self.worker.stop.set()
        self.thread.join(10)


class Cluster:
    """Start workers of the test app on the test's broker, the same way on every kind."""

    def __init__(
        self,
        kind: str,
        url: str,
        app: Conveyor,
        record_dir: Path,
        spawn_worker: Any,
        pool: str = "prefork",
    ) -> None:
        self.kind = kind
        self.pool = pool
        self.url = url
        self.app = app
        self.record_dir = record_dir
        self.spawn_worker = spawn_worker
        self.threads: list[ThreadWorker] = []

    def start(self, concurrency: int = 2, lease: float | None = None) -> Any:
        if self.kind == "memory":
            if lease is not None:
                self.app.conf.worker_lease_seconds = lease
            worker = ThreadWorker(self.app, concurrency).start()
            self.threads.append(worker)
            return worker
        env = {"CONTRACT_RECORD_DIR": str(self.record_dir)}
        if lease is not None:
            env["CONTRACT_LEASE_SECONDS"] = str(lease)
        return self.spawn_worker(
            "tests.apps.contract", self.url, "-P", self.pool, "-c", str(concurrency), env=env
        )

    def log(self, key: str) -> list[list[str]]:
        return contract.read_log(self.record_dir, key)

    def close(self) -> None:
        for worker in self.threads:
            worker.stop()


# The asyncio pool on Redis and SQLite (its consumer is the same on a Redis Cluster;
# left out to keep the suite's time), and the gevent pool on Redis.
@pytest.fixture(
    params=[
        "redis", "cluster", "sqlite", "memory", "redis+asyncio", "sqlite+asyncio", "redis+gevent"
    ]
)
def cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    spawn_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Cluster]:
    kind, _, pool = str(request.param).partition("+")
    if kind == "redis":
        url: str = request.getfixturevalue("redis_url")
    elif kind == "cluster":  # a Redis Cluster of three shards
        url = request.getfixturevalue("cluster_url")
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'broker.db'}"
    else:
        url = f"memory://{uuid.uuid4().hex}"
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    monkeypatch.setenv("CONTRACT_RECORD_DIR", str(record_dir))  # for in-process tasks
    app = contract.app
    lease = app.conf.worker_lease_seconds
    with connected(app, url):
        group = Cluster(kind, url, app, record_dir, spawn_worker, pool or "prefork")
        try:
            yield group
        finally:
            group.close()
            app.conf.worker_lease_seconds = lease


@pytest.fixture
def tasks(cluster: Cluster) -> ModuleType:
    return contract


def test_tasks_run_and_results_come_back(cluster: Cluster, tasks: ModuleType) -> None:
    cluster.start()
    results = [tasks.add.delay(i, i) for i in range(50)]
    assert [r.get(timeout=15) for r in results] == [2 * i for i in range(50)]
    assert all(r.successful() for r in results)


def test_countdown_starts_within_a_tenth_of_a_second_of_due(
    cluster: Cluster, tasks: ModuleType
) -> None:
    cluster.start()
    tasks.add.delay(1, 1).get(timeout=15)  # the worker is up and idle
    sent = time.time()
    started = tasks.started_at.apply_async(countdown=1).get(timeout=15)
    late = started - (sent + 1.0)
    assert -0.01 <= late < 0.1, f"started {late:+.3f}s from due"


def test_a_task_three_times_longer_than_the_lease_runs_once(
    cluster: Cluster, tasks: ModuleType
) -> None:
    cluster.start(concurrency=1, lease=1.0)
    cluster.start(concurrency=1, lease=1.0)  # an idle peer, reclaiming what lapses
    result = tasks.record.delay("long", 3.0)
    assert result.get(timeout=20) == result.id
    time.sleep(1.5)  # a lapsed lease would have been reclaimed and run again by now
    starts = [line for line in cluster.log("long") if line[0] == "start"]
    assert len(starts) == 1, starts


def _leased_task_ids(app: Conveyor) -> set[str]:
    """Ids of the tasks any consumer holds leased now, on a Redis Cluster."""
    import json

    client = app.broker.client  # type: ignore[attr-defined]
    keys = app.broker.keys  # type: ignore[attr-defined]
    ids: set[str] = set()
    for key in client.scan_iter(match=keys.queue_inflight("celery", "*"), target_nodes="primaries"):
        for value in client.hvals(key):
            ids.add(json.loads(bytes(value).split(b"\n", 2)[2])["id"])
    return ids


@pytest.mark.chaos
def test_sigkill_mid_task_loses_nothing(cluster: Cluster, tasks: ModuleType) -> None:
    if cluster.kind == "memory":
        pytest.skip("memory:// lives in one process: there is no worker process to kill")
    total = 20
    first = cluster.start(concurrency=2, lease=2.0)
    ids = [tasks.record.delay("k", 0.3).id for _ in range(total)]
    wait_for(
        lambda: sum(line[0] == "done" for line in cluster.log("k")) >= 4, 20, what="4 tasks done"
    )
    first.kill_group(signal.SIGKILL)
    first.wait(5)
    # What was running at the kill: started, and no result stored (the result and the
    # ack are one write, so a task with a result was acknowledged).
    started = {line[1] for line in cluster.log("k") if line[0] == "start"}
    running = {i for i in started if not cluster.app.AsyncResult(i).ready()}
    if cluster.kind == "cluster":
        # On a Redis Cluster the result (its task's slot) and the ack (its queue's) are
        # two writes, result first: a task killed between them is still leased, and runs
        # again like one that was running (docs/architecture.md, "Redis Cluster").
        running |= _leased_task_ids(cluster.app)
    assert len(started) < total, "the kill came too late to interrupt anything"

    cluster.start(concurrency=2, lease=2.0)
    results = [cluster.app.AsyncResult(i) for i in ids]
    assert [r.get(timeout=30) for r in results] == ids
    runs: dict[str, int] = {}
    for line in cluster.log("k"):
        if line[0] == "start":
            runs[line[1]] = runs.get(line[1], 0) + 1
    assert set(runs) == set(ids)
    twice = {i for i, n in runs.items() if n > 1}
    assert twice <= running, f"ran twice though not running at the kill: {twice - running}"
