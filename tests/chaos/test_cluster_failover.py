"""SIGKILL a Redis Cluster master (its replica takes over) under load: producers publish
to queues spread over every shard, one worker consumes them all. Count lost and
duplicated tasks. With ``wait_for_replicas=1`` nothing confirmed is lost."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
import redis

from conveyor.exceptions import BrokerUnavailable
from conveyor.stores.redis.keys import ClusterKeys

from ..support import wait_for
from ..support_cluster import RedisClusterNodes

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

BATCH = "cluster-failover"
QUEUES = [f"q{i}" for i in range(6)]


class Producer(threading.Thread):
    """Publishes item 0, 1, 2, ... round robin over QUEUES; an item whose publish raised
    is sent again, so ``sent`` holds exactly the confirmed items."""

    def __init__(self, task: Any) -> None:
        super().__init__(daemon=True)
        self.task = task
        self.sent: list[int] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                self.task.apply_async((BATCH, n), queue=QUEUES[n % len(QUEUES)])
            except (BrokerUnavailable, redis.RedisError, OSError):
                self.refused += 1
                time.sleep(0.05)
                continue
            self.sent.append(n)
            n += 1
            time.sleep(0.002)


def test_sigkill_of_a_cluster_master_loses_no_confirmed_task(
    redis_cluster: RedisClusterNodes, cluster_url: str, redis_server: Any, redis_url: str,
    spawn_worker: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from ..apps import failover

    cluster = redis_cluster
    side = redis_server.client()
    monkeypatch.setenv("TEST_SIDE_URL", redis_url)
    monkeypatch.setenv("TEST_TRANSPORT_OPTIONS", "{}")
    failover.app.close()
    failover.app.conf.broker_url = cluster_url
    failover.app.conf.broker_transport_options = {"wait_for_replicas": 1}
    failover.app.conf.task_ignore_result = True
    producer = Producer(failover.mark)
    victim = cluster.master_of(ClusterKeys().queue(QUEUES[0]))
    try:
        worker = spawn_worker(
            "tests.apps.failover", cluster_url, "-c", "2", "-Q", ",".join(QUEUES),
            env=dict(os.environ),
        )  # fmt: skip
        producer.start()
        wait_for(lambda: side.hlen(f"runs:{BATCH}") >= 300, 30, what="300 tasks run")

        victim.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: cluster.master_of(ClusterKeys().queue(QUEUES[0])).port != victim.port,
                 30, interval=0.1, what="the replica promoted")  # fmt: skip
        promoted_after = time.monotonic() - killed_at
        victim.start()  # its nodes.conf makes it rejoin, as the new master's replica
        wait_for(cluster.healthy, 30, interval=0.2, what="cluster state ok")
        sent_at_rejoin = len(producer.sent)
        wait_for(lambda: len(producer.sent) > sent_at_rejoin + 300, 60,
                 what="producers going on after the failover")  # fmt: skip
        producer.stop.set()
        producer.join(10)

        expected = set(producer.sent)
        wait_for(lambda: side.hlen(f"runs:{BATCH}") >= len(expected), 60, interval=0.2,
                 what="every confirmed task run")  # fmt: skip
        runs = {int(k): int(v) for k, v in side.hgetall(f"runs:{BATCH}").items()}
        lost = expected - set(runs)
        duplicated = {n: c for n, c in runs.items() if c > 1}
        print(
            f"\ncluster failover: promoted after {promoted_after:.1f}s; {len(expected)} "
            f"confirmed, {producer.refused} publishes refused while the shard had no "
            f"replica, lost {len(lost)}, duplicated {len(duplicated)}"
        )
        assert not lost, sorted(lost)[:20]
        # Duplicates: only what the worker held leased or ran unacked on the dead shard
        # (a batch per child; docs/architecture.md, "Redis Cluster").
        assert len(duplicated) <= 200, duplicated
        assert worker.process.poll() is None, "the same worker went on"
    finally:
        producer.stop.set()
        failover.app.close()
        failover.app.conf.task_ignore_result = False
        if not victim.alive:
            victim.start()
        wait_for(cluster.healthy, 30, interval=0.2, what="cluster state ok")
