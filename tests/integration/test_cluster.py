"""Redis Cluster: ``redis+cluster://`` for broker, backend and coordinator, each script on
one hash slot, queues spread across shards, a consumer fetching from each queue's shard,
MOVED followed when a queue's slot moves, and a worker running tasks end to end."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from conveyor import Conveyor
from conveyor.exceptions import BrokerUnavailable, ConfigurationError
from conveyor.stores import backend_from_url, coordinator_from_url, transport_from_url
from conveyor.stores.redis.cluster import RedisClusterTransport
from conveyor.stores.redis.keys import ClusterKeys, RedisKeys, coordination_prefix
from conveyor.stores.redis.slots import parse_cluster_url
from conveyor.stores.transport import PRIORITY_LEVELS

from ..support_cluster import RedisClusterNodes, SlotMigration

pytestmark = [pytest.mark.redis]

LUA = Path(__file__).parents[2] / "src" / "conveyor" / "stores" / "redis" / "lua"


def slot(key: str) -> int:
    return key_slot(key.encode())


# --- the URL ------------------------------------------------------------------------------


def test_a_cluster_url_names_nodes_credentials_and_tls() -> None:
    address = parse_cluster_url("rediss+cluster://app:p%40ss@h1:7000,h2:7001/0?ssl_cert_reqs=none")
    assert address.nodes == [("h1", 7000), ("h2", 7001)]
    assert (address.username, address.password, address.tls) == ("app", "p@ss", True)
    assert address.query == {"ssl_cert_reqs": "none"}
    plain = parse_cluster_url("redis+cluster://:secret@10.0.0.1:7000")
    assert (plain.username, plain.password, plain.tls) == (None, "secret", False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "names no node"),
        ("redis+cluster://h1", "expected host:port"),
        ("redis+cluster://h1:x", "expected host:port"),
        ("redis+cluster://h1:7000/3", "only database 0"),
    ],
)
def test_a_cluster_url_conveyor_cannot_read_is_a_clear_error(url: str, message: str) -> None:
    for make in (transport_from_url, backend_from_url, coordinator_from_url):
        with pytest.raises(ConfigurationError, match=message):
            make(url)


# --- every script on one slot ----------------------------------------------------------------


def test_each_queue_script_touches_one_slot() -> None:
    """Every key a queue script touches, declared or built from a declared key, hashes
    to the queue's slot; a result's keys to the task's; a chord's to the chord's."""
    keys = ClusterKeys("conveyor")
    for name in ("q", "emails", "a}b", "{x}", "with:colon"):
        base = keys.queue(name)
        queue_keys = [
            base, keys.eta(name), keys.wake(name),
            *(keys.level(name, level) for level in range(PRIORITY_LEVELS)),
            keys.queue_inflight(name, "host:1:c0"), keys.queue_consumers(name),
            keys.queue_redeliveries(name),
            # reclaim.lua builds in-flight names as <ARGV[1]>:inflight:<consumer>
            f"{base}:inflight:other-consumer",
        ]  # fmt: skip
        assert {slot(k) for k in queue_keys} == {slot(base)}, name
    assert slot(keys.result("t1")) == slot(keys.state("t1"))
    assert slot(keys.chord("c1")) == slot(keys.chord_done("c1"))
    coordination = RedisKeys(coordination_prefix("conveyor"))
    every = [
        coordination.lease("beat"), coordination.schedule_state, coordination.unique("k"),
        coordination.rate("t"), coordination.rate_hold("id"), coordination.rate_limits,
        coordination.slots("k"), coordination.consumers, coordination.revoked,
        coordination.revoked_terminate, coordination.revoked_version, coordination.workers,
        coordination.worker("w1"), coordination.dead_letters, coordination.dead_letter_records,
    ]  # fmt: skip
    assert len({slot(k) for k in every}) == 1


def test_queues_spread_across_the_shards(redis_cluster: RedisClusterNodes) -> None:
    keys = ClusterKeys("conveyor")
    shards = {redis_cluster.master_of(keys.queue(f"q{i}")).port for i in range(12)}
    assert len(shards) == 3


# Scripts whose key names come from data: the list key kept in an in-flight record
# (defer, release, reclaim), a consumer id read from the leases zset (reclaim), a holder
# read from a slot set (slot, on one Redis only), a chord's queue (chord_part, on one
# Redis only). Every other script takes all of its keys in KEYS.
NAMED_FROM_DATA = {"defer", "release", "reclaim", "slot", "chord_part"}


def _code(name: str) -> str:
    source = (LUA / f"{name}.lua").read_text()
    return "\n".join(line.split("--")[0] for line in source.splitlines())


# How the scripts that name keys at run time do it: a suffix joined to a key
# ("base .. ':eta'"), or a key prefix passed as an argument ("ARGV[1] .. ':inflight:'").
BUILT_KEY = re.compile(r"\.\.\s*':|ARGV\[\d+\]\s*\.\.")


def test_every_other_script_declares_the_keys_it_touches() -> None:
    declared = sorted(p.stem for p in LUA.glob("*.lua") if p.stem not in NAMED_FROM_DATA)
    assert {"enqueue", "enqueue_unique", "fetch", "chord_count"} <= set(declared)
    for name in declared:
        assert not BUILT_KEY.search(_code(name)), f"{name}.lua builds a key name"
    for name in NAMED_FROM_DATA - {"chord_part"}:
        assert BUILT_KEY.search(_code(name)), f"{name}.lua: the pattern no longer sees it"


# --- broker, backend and coordinator on the cluster -----------------------------------------


@pytest.fixture
def transport(cluster_url: str) -> Iterator[RedisClusterTransport]:
    made = transport_from_url(cluster_url)
    assert isinstance(made, RedisClusterTransport)
    yield made
    made.close()


def test_one_consumer_fetches_from_each_queues_shard(
    transport: RedisClusterTransport, redis_cluster: RedisClusterNodes
) -> None:
    queues = [f"q{i}" for i in range(6)]
    assert len({redis_cluster.master_of(transport.keys.queue(q)).port for q in queues}) > 1
    for queue in queues:
        transport.publish(queue, [f"{queue}-{i}".encode() for i in range(5)])
    consumer = transport.consumer(queues, "c1", 30)
    try:
        got = []
        while len(got) < 30:
            batch = consumer.fetch(7, timeout=2)
            assert batch, "every queue's messages are fetched"
            got += batch
        assert sorted(d.body for d in got) == sorted(
            f"{q}-{i}".encode() for q in queues for i in range(5)
        )
        assert {d.queue for d in got} == set(queues)
        # Each queue's messages are leased in its own slot, FIFO within the queue.
        for queue in queues:
            bodies = [d.body for d in got if d.queue == queue]
            assert bodies == [f"{queue}-{i}".encode() for i in range(5)]
        assert transport.inflight_count() == 30
        for delivery in got:
            consumer.ack(delivery)
        consumer.flush()
        assert transport.inflight_count() == 0
        assert consumer.fetch(10, timeout=0.2) == []
    finally:
        consumer.close()


def test_an_idle_consumer_wakes_for_a_message_on_another_shard(
    transport: RedisClusterTransport, redis_cluster: RedisClusterNodes
) -> None:
    keys = transport.keys
    by_shard: dict[int, str] = {}
    for i in range(20):
        by_shard.setdefault(redis_cluster.master_of(keys.queue(f"w{i}")).port, f"w{i}")
    first, second = list(by_shard.values())[:2]
    consumer = transport.consumer([first, second], "c1", 30)
    try:
        assert consumer.fetch(1, timeout=0.3) == []
        transport.publish(second, [b"late"], countdown=0.2)
        got = consumer.fetch(1, timeout=5)
        assert [d.body for d in got] == [b"late"]
    finally:
        consumer.close()


def test_a_dead_consumers_leases_go_back_on_every_shard(transport: RedisClusterTransport) -> None:
    queues = [f"r{i}" for i in range(6)]
    for queue in queues:
        transport.publish(queue, [queue.encode()])
    consumer = transport.consumer(queues, "dead", 30)
    got = consumer.fetch(10, timeout=2)
    while len(got) < len(queues):
        got += consumer.fetch(10, timeout=2)
    consumer.close()
    assert sum(s.ready for s in transport.queues()) == 0
    assert transport.reclaim("dead") == len(queues)
    stats = {s.name: s.ready for s in transport.queues()}
    assert stats == dict.fromkeys(queues, 1)
    again = transport.consumer(queues, "alive", 30)
    try:
        redelivered = again.fetch(10, timeout=2)
        while len(redelivered) < len(queues):
            redelivered += again.fetch(10, timeout=2)
        assert {d.deliveries for d in redelivered} == {2}
    finally:
        again.close()


def test_results_and_chords_on_the_cluster(cluster_url: str) -> None:
    from conveyor.stores.results import ChordSpec
    from conveyor.stores.transport import ResultWrite

    backend = backend_from_url(cluster_url, expires=60)
    try:
        backend.store("t1", b"final", final=True)
        assert backend.wait("t1", timeout=1) == b"final"
        assert backend.get_many(["t1", "nope"]) == [b"final", None]
        members = [f"m{i}" for i in range(5)]
        spec = _chord_spec(ChordSpec, "ch1", members)
        backend.chord_start(spec)
        outcomes = [backend.chord_part("ch1", ResultWrite(m, b"r", True)) for m in members]
        assert outcomes[:-1] == [None] * 4
        assert outcomes[-1] is not None and outcomes[-1].body == b"body"
        # Stored again (a redelivery): counted once, the body is not sent again.
        assert backend.chord_part("ch1", ResultWrite(members[0], b"r", True)) is None
        assert [backend.get(m) for m in members] == [b"r"] * 5
    finally:
        backend.close()


def test_results_are_awaited_on_the_cluster(cluster_url: str) -> None:
    """The async client on a cluster backend (no native async link: the shared waiter
    thread serves it, as for every store without one)."""
    import asyncio

    from conveyor.stores.aio import get_async, get_many_async, wait_async

    backend = backend_from_url(cluster_url, expires=60)

    async def main() -> list[Any]:
        backend.store("a1", b"final", final=True)
        got = await get_async(backend, "a1")
        many = await get_many_async(backend, ["a1", "nope"])
        missing = await wait_async(backend, "nope", 0.2)
        return [got, many, missing]

    try:
        assert asyncio.run(main()) == [b"final", [b"final", None], None]
    finally:
        backend.close()


def _chord_spec(spec_class: Any, chord_id: str, members: list[str]) -> Any:
    from conveyor.stores.results import ChordBody

    fields = spec_class.__dataclass_fields__
    values: dict[str, Any] = {"id": chord_id, "members": members}
    values["body"] = ChordBody(b"body", "celery", 0)
    if "enqueue" in fields:
        values["enqueue"] = False
    return spec_class(**values)


def test_coordination_on_the_cluster(cluster_url: str) -> None:
    coordinator = coordinator_from_url(cluster_url)
    try:
        assert coordinator.hold_lease("beat", "a", 5)
        assert not coordinator.hold_lease("beat", "b", 5)
        assert coordinator.lease_owner("beat") == "a"
        coordinator.revoke(["t1", "t2"], 60)
        revocations = coordinator.revocations(0)
        assert revocations is not None and revocations.revoked == {"t1", "t2"}
        assert coordinator.acquire_rate("task", 1.0, "r1") == 0.0
        assert coordinator.acquire_rate("task", 1.0, "r2") > 0.5
        assert coordinator.claim_unique("k", "first", 60) is None
        assert coordinator.claim_unique("k", "second", 60) == "first"
    finally:
        coordinator.close()


def test_a_moved_slot_is_followed(
    transport: RedisClusterTransport, redis_cluster: RedisClusterNodes
) -> None:
    """Reshard a queue's slot to another master while a consumer and a producer hold
    links to the old one: both follow the MOVED replies."""
    queue = "moving"
    transport.publish(queue, [b"before"])
    consumer = transport.consumer([queue], "c1", 30)
    try:
        assert [d.body for d in consumer.fetch(1, timeout=1)] == [b"before"]
        _migrate_slot(redis_cluster, transport.keys.queue(queue))
        transport.publish(queue, [b"after"])
        got = consumer.fetch(1, timeout=2)
        assert [d.body for d in got] == [b"after"]
        consumer.ack(got[0])
        consumer.flush()
    finally:
        consumer.close()


def _migrate_slot(cluster: RedisClusterNodes, key: str) -> None:
    migration = SlotMigration(cluster, key)
    migration.run()
    assert cluster.master_of(key).port == migration.target.port


# --- a worker end to end -----------------------------------------------------------------------


def test_a_worker_runs_tasks_from_queues_on_every_shard(
    cluster_url: str, redis_url: str, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ..apps import failover

    monkeypatch.setenv("TEST_SIDE_URL", redis_url)
    monkeypatch.delenv("TEST_TRANSPORT_OPTIONS", raising=False)
    failover.app.close()
    failover.app.conf.broker_url = cluster_url
    failover.app.conf.broker_transport_options = {}
    queues = [f"q{i}" for i in range(4)]
    try:
        spawn_worker(
            "tests.apps.failover", cluster_url, "-c", "2", "-Q", ",".join(queues),
            env=dict(os.environ),
        )  # fmt: skip
        results = [
            failover.add.apply_async((i, i), queue=queues[i % len(queues)]) for i in range(40)
        ]
        assert [r.get(timeout=20) for r in results] == [2 * i for i in range(40)]
    finally:
        failover.app.close()


def test_an_app_on_the_cluster(cluster_url: str) -> None:
    app = Conveyor("cluster-app", broker_url=cluster_url)
    try:
        assert isinstance(app.broker, RedisClusterTransport)
        app.broker.publish("celery", [b"x"])
        assert [s.ready for s in app.broker.queues()] == [1]
    finally:
        app.close()
    with pytest.raises(redis.RedisError):
        redis.Redis(port=1).ping()  # nothing else listens where the suite did not start it


def test_user_and_password_in_the_url_as_in_redis_urls(
    redis_cluster: RedisClusterNodes, cluster_url: str
) -> None:
    """An ACL user on every node (ACLs are per node in a cluster); the URL's credentials
    reach the cold path (RedisCluster) and the raw links alike."""
    for node in redis_cluster.nodes:
        if node.alive:
            node.client().execute_command("ACL", "SETUSER", "app", "on", ">s3cret", "~*", "+@all")
    try:
        authed = cluster_url.replace("redis+cluster://", "redis+cluster://app:s3cret@")
        transport = transport_from_url(authed)
        try:
            transport.publish("authed", [b"x"])
            consumer = transport.consumer(["authed"], "c1", 30)
            assert [d.body for d in consumer.fetch(1, timeout=1)] == [b"x"]
            consumer.close()
        finally:
            transport.close()
        wrong = cluster_url.replace("redis+cluster://", "redis+cluster://app:wrong@")
        with pytest.raises(BrokerUnavailable, match="invalid username-password") as refused:
            transport_from_url(wrong)
        assert "wrong" not in str(refused.value) and "app:***@" in str(refused.value)
    finally:
        for node in redis_cluster.nodes:
            if node.alive:
                node.client().execute_command("ACL", "DELUSER", "app")


def test_a_tls_cluster_with_broker_use_ssl(tmp_path: Path) -> None:
    """rediss+cluster:// to a cluster that speaks TLS only (bus and replication too) and
    wants client certificates: broker_use_ssl reaches the cluster client and the raw
    links; a CA it does not know is refused in one line."""
    from ..certs import issue

    ca = issue("conveyor test CA", ca=True)
    ca.write(tmp_path, "ca")
    issue("stranger CA", ca=True).write(tmp_path, "stranger-ca")
    issue("127.0.0.1", issuer=ca, ip="127.0.0.1").write(tmp_path, "server")
    issue("client", issuer=ca).write(tmp_path, "client")
    cluster = RedisClusterNodes(tmp_path / "nodes", replicas=0, tls_dir=tmp_path)
    try:
        cluster.start()
        url = cluster.url("rediss+cluster")
        tls = cluster.client_tls()
        transport = transport_from_url(url, use_ssl=tls)
        backend = backend_from_url(url, use_ssl=tls)
        try:
            queues = [f"t{i}" for i in range(6)]
            for queue in queues:
                transport.publish(queue, [queue.encode()])
            consumer = transport.consumer(queues, "c1", 30)
            got = consumer.fetch(10, timeout=2)
            while len(got) < len(queues):
                got += consumer.fetch(10, timeout=2)
            assert sorted(d.body for d in got) == sorted(q.encode() for q in queues)
            consumer.close()
            backend.store("t1", b"meta", final=True)
            assert backend.wait("t1", timeout=1) == b"meta"
        finally:
            transport.close()
            backend.close()
        assert tls is not None
        stranger = {**tls, "ssl_ca_certs": str(tmp_path / "stranger-ca.pem")}
        refused = r"cannot reach the Redis Cluster at rediss\+cluster://.*certificate"
        with pytest.raises(BrokerUnavailable, match=refused):
            transport_from_url(url, use_ssl=stranger)
    finally:
        cluster.stop()
