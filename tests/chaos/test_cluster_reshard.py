"""Reshard a live queue: its hash slot moves from master to master and back, key by key
(as ``redis-cli --cluster reshard`` moves it), while one worker drains it and two
producers send to it. Commands meet ASK, TRYAGAIN, scripts stopped at a half-moved key
and MOVED; no task may be lost or run twice (nothing fails over, so no lease is lost)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from conveyor.stores.redis.keys import ClusterKeys

from ..support import wait_for
from ..support_cluster import RedisClusterNodes, SlotMigration

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

BATCH = "cluster-reshard"
MOVING, STILL = "resharded", "beside"


class Producer(threading.Thread):
    """Publishes items ``start``, ``start + step``, ... alternating the two queues; every
    publish must succeed (a migration is no outage)."""

    def __init__(self, task: Any, start: int, step: int) -> None:
        super().__init__(daemon=True)
        self.task, self.next, self.step = task, start, step
        self.sent: list[int] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                n = self.next
                self.task.apply_async((BATCH, n), queue=MOVING if n % 4 else STILL)
                self.sent.append(n)
                self.next += self.step
                time.sleep(0.002)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc


def _redirections(cluster: RedisClusterNodes) -> dict[str, int]:
    """The redirections the masters replied with (INFO errorstats), summed."""
    total = dict.fromkeys(("ASK", "MOVED", "TRYAGAIN"), 0)
    for node in cluster.masters():
        for name, stat in node.client().info("errorstats").items():
            kind = name.removeprefix("errorstat_")
            if kind in total:
                total[kind] += int(stat["count"])
    return total


def test_a_queue_resharded_under_load_loses_and_repeats_nothing(
    redis_cluster: RedisClusterNodes, cluster_url: str, redis_server: Any, redis_url: str,
    spawn_worker: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from ..apps import failover

    side = redis_server.client()
    monkeypatch.setenv("TEST_SIDE_URL", redis_url)
    monkeypatch.setenv("TEST_TRANSPORT_OPTIONS", "{}")
    failover.app.close()
    failover.app.conf.broker_url = cluster_url
    failover.app.conf.broker_transport_options = {}
    failover.app.conf.task_ignore_result = True
    producers = [Producer(failover.mark, start, 2) for start in (0, 1)]
    key = ClusterKeys().queue(MOVING)
    migration: SlotMigration | None = None
    try:
        worker = spawn_worker(
            "tests.apps.failover", cluster_url, "-c", "2", "-Q", f"{MOVING},{STILL}",
            env=dict(os.environ),
        )  # fmt: skip
        for producer in producers:
            producer.start()
        wait_for(lambda: side.hlen(f"runs:{BATCH}") >= 200, 30, what="200 tasks run")
        before = _redirections(redis_cluster)
        moves: list[tuple[int, int, int]] = []
        for _ in range(4):
            migration = SlotMigration(redis_cluster, key)
            migration.begin()
            # A key at a time, 80 ms apart: the slot stays split for a while under load.
            moved = migration.move_keys(pause=0.08)
            migration.finish()
            moves.append((migration.source.port, migration.target.port, moved))
            ran = side.hlen(f"runs:{BATCH}")
            wait_for(lambda ran=ran: side.hlen(f"runs:{BATCH}") > ran + 50, 30,
                     what="tasks running again after the move")  # fmt: skip
        met = {k: n - before[k] for k, n in _redirections(redis_cluster).items()}
        sent_before_stop = sum(len(p.sent) for p in producers)
        for producer in producers:
            producer.stop.set()
            producer.join(30)
        for producer in producers:
            assert producer.error is None, f"a publish failed during a move: {producer.error!r}"

        expected = {n for p in producers for n in p.sent}
        wait_for(lambda: side.hlen(f"runs:{BATCH}") >= len(expected), 60, interval=0.2,
                 what="every task run")  # fmt: skip
        time.sleep(0.5)  # a duplicate would show up now
        runs = {int(k): int(v) for k, v in side.hgetall(f"runs:{BATCH}").items()}
        lost = expected - set(runs)
        duplicated = {n: c for n, c in runs.items() if c > 1}
        print(
            f"\ncluster reshard: slot moved {len(moves)} times {moves} (source, target, "
            f"keys); replies met {met}; {sent_before_stop} sent, lost {len(lost)}, "
            f"duplicated {len(duplicated)}"
        )
        assert all(moved > 0 for _, _, moved in moves), "each move carried the live queue"
        assert met["ASK"] > 0 and met["MOVED"] > 0, f"the moves met no redirection: {met}"
        assert not lost, sorted(lost)[:20]
        assert not duplicated, duplicated
        assert worker.process.poll() is None, "the same worker went on"
    finally:
        for producer in producers:
            producer.stop.set()
        if migration is not None:
            migration.complete()
        failover.app.close()
        failover.app.conf.task_ignore_result = False
