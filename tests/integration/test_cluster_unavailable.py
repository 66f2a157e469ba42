"""A Redis Cluster that cannot serve: a shard's master killed (no replica to take over),
then every node. Whatever path a call takes (the raw links, redis-py's cluster client,
its pipelines, scripts), the caller sees conveyor's BrokerUnavailable naming the URL,
never a redis-py class (ClusterDownError, ConnectionError, "TTL exhausted"), within
about ``failover_timeout``; the shards still up go on."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from conveyor.exceptions import BrokerUnavailable
from conveyor.stores import backend_from_url, coordinator_from_url, transport_from_url
from conveyor.stores.redis.cluster import RedisClusterTransport
from conveyor.stores.redis.keys import ClusterKeys

from ..support_cluster import RedisClusterNodes

pytestmark = [pytest.mark.redis]

OPTIONS = {"failover_timeout": 1}


def _refused(call: Callable[[], Any], url: str) -> float:
    """Seconds until ``call`` raised BrokerUnavailable (and nothing else)."""
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="cannot reach") as raised:
        call()
    assert not isinstance(raised.value, redis.exceptions.ResponseError)
    assert getattr(raised.value, "url", None) == url
    return time.monotonic() - started


def test_a_killed_shard_and_a_killed_cluster_are_broker_unavailable(tmp_path: Path) -> None:
    cluster = RedisClusterNodes(tmp_path / "nodes", replicas=0)
    try:
        cluster.start()
        url = cluster.url()
        transport = transport_from_url(url, transport_options=OPTIONS)
        backend = backend_from_url(url, transport_options=OPTIONS)
        coordinator = coordinator_from_url(url, transport_options=OPTIONS)
        assert isinstance(transport, RedisClusterTransport)
        keys = ClusterKeys()
        by_shard: dict[int, str] = {}
        for i in range(30):
            by_shard.setdefault(cluster.master_of(keys.queue(f"q{i}")).port, f"q{i}")
        assert len(by_shard) == 3
        for queue in by_shard.values():
            transport.publish(queue, [b"x"])
        task_ids = [f"t{i}" for i in range(30)]
        for task_id in task_ids:
            backend.store(task_id, b"r", final=True)

        victim = next(n for n in cluster.nodes if n.port in by_shard)
        dead_queue = by_shard[victim.port]
        live_queue = next(q for port, q in by_shard.items() if port != victim.port)
        lease = coordinator.keys.lease("beat")  # type: ignore[attr-defined]
        coordination_port = cluster.master_of(lease).port
        victim.kill(signal.SIGKILL)
        waits = {
            # redis-py's ClusterPipeline over every shard (it raised ClusterDownError or
            # ConnectionError raw before)
            "queues(), a cluster pipeline": _refused(transport.queues, url),
            "get_many(), a pipeline of GETs": _refused(lambda: backend.get_many(task_ids), url),
            "publish, the raw link": _refused(lambda: transport.publish(dead_queue, [b"y"]), url),
            "purge, a pipeline then DEL": _refused(lambda: transport.purge([dead_queue]), url),
        }
        transport.publish(live_queue, [b"still served"])  # the other shards go on
        if coordination_port == victim.port:
            waits["a lease on the dead shard"] = _refused(
                lambda: coordinator.hold_lease("beat", "a", 5), url
            )
        else:
            assert coordinator.hold_lease("beat", "a", 5)

        for node in cluster.nodes:
            node.kill(signal.SIGKILL)
        waits["every node down: queues()"] = _refused(transport.queues, url)
        waits["every node down: a lease"] = _refused(
            lambda: coordinator.hold_lease("beat", "a", 5), url
        )
        waits["every node down: a script"] = _refused(lambda: transport.reclaim(), url)
        print("\nseconds to BrokerUnavailable:", {k: round(v, 1) for k, v in waits.items()})
        assert max(waits.values()) < 15, waits
        for store in (transport, backend, coordinator):
            store.close()
    finally:
        cluster.stop()
