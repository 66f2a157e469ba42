"""A queue's slot half moved between two masters (SETSLOT MIGRATING/IMPORTING, its keys
already MIGRATEd, the move not yet finished): the raw links follow ASK to the importing
node for what it can serve alone, wait out TRYAGAIN for the scripts that need every key
of the queue, and follow MOVED once the slot has moved. The same under load, a worker
draining and producers sending, is tests/chaos/test_cluster_reshard.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from conveyor.stores import transport_from_url
from conveyor.stores.redis.cluster import RedisClusterTransport

from ..support_cluster import RedisClusterNodes, SlotMigration

pytestmark = [pytest.mark.redis]


@pytest.fixture
def transport(cluster_url: str) -> Iterator[RedisClusterTransport]:
    made = transport_from_url(cluster_url, transport_options={"failover_timeout": 10})
    assert isinstance(made, RedisClusterTransport)
    yield made
    made.close()


def _on_target(migration: SlotMigration, *command: object) -> object:
    """A command on the importing node, which serves the slot's keys after ASKING."""
    client = migration.target.client()
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("ASKING")
    pipe.execute_command(*command)
    return pipe.execute()[1]


def test_a_half_moved_queue_is_followed_by_ask_then_moved(
    transport: RedisClusterTransport, redis_cluster: RedisClusterNodes
) -> None:
    queue = "half-moved"
    keys = transport.keys
    transport.publish(queue, [b"m1", b"m2", b"m3", b"m4"])
    consumer = transport.consumer([queue], "c1", 30)
    migration = SlotMigration(redis_cluster, keys.queue(queue))
    try:
        got = consumer.fetch(3, timeout=1)
        assert [d.body for d in got] == [b"m1", b"m2", b"m3"]
        migration.begin()
        assert migration.move_keys() >= 3  # level list, in-flight hash, leases zset
        assert (
            migration.source.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", migration.slot)
            == 0
        )
        inflight = keys.queue_inflight(queue, "c1")

        # Single-key commands on the raw link go to the importing node (ASK): an ack
        # sent write-behind, and the in-flight listing recover() reads.
        started = time.monotonic()
        consumer.ack(got[0])
        consumer.flush()
        assert consumer.recover({d.tag for d in got}) == 0
        assert time.monotonic() - started < 2, "followed at once, not waited out"
        assert _on_target(migration, "HLEN", inflight) == 2

        # The cold path (redis-py's cluster client and its pipelines) follows ASK too.
        assert [(s.name, s.ready) for s in transport.queues()] == [(queue, 1)]

        # A publish (raw link) and a release through redis-py's client (the keeper's
        # path) need several of the queue's keys together: the importing node answers
        # TRYAGAIN while the move is unfinished, for longer than redis-py's own few
        # retries; both wait it out and follow MOVED once the slot is the target's.
        published, released = threading.Event(), threading.Event()

        def publish() -> None:
            transport.publish(queue, [b"m5"])
            published.set()

        def release() -> None:
            transport.release("c1", [got[1]])
            released.set()

        for step in (publish, release):
            threading.Thread(target=step, daemon=True).start()
        time.sleep(1.0)
        assert not published.is_set(), "a publish cannot complete while the slot is split"
        assert not released.is_set(), "nor a release"
        migration.finish()
        assert published.wait(5), "the publish went through once the slot had moved"
        assert released.wait(5), "the release went through once the slot had moved"
        assert redis_cluster.master_of(keys.queue(queue)).port == migration.target.port

        rest = consumer.fetch(10, timeout=2)
        assert [d.body for d in rest] == [b"m2", b"m4", b"m5"]
        for delivery in [got[2], *rest]:
            consumer.ack(delivery)
        consumer.flush()
        assert transport.inflight_count() == 0
        assert sum(s.ready + s.scheduled for s in transport.queues()) == 0
    finally:
        consumer.close()
        migration.complete()


def test_a_release_stopped_at_a_half_moved_key_gives_each_message_back_once(
    transport: RedisClusterTransport, redis_cluster: RedisClusterNodes
) -> None:
    """release.lua wakes consumers through a key it names from the in-flight record, not
    one it declares; while the slot is half moved and that key is already on the
    importing node, Redis stops the script there. Run again once the slot has moved, it
    must give each message back once: nothing pushed before the stop."""
    queue = "released"
    keys = transport.keys
    transport.publish(queue, [b"r1", b"r2", b"r3"])
    consumer = transport.consumer([queue], "c1", 30)
    migration = SlotMigration(redis_cluster, keys.queue(queue))
    try:
        got = consumer.fetch(2, timeout=1)
        assert [d.body for d in got] == [b"r1", b"r2"]
        source = migration.source.client()
        # Every key release.lua declares exists on the source, so Redis runs it there;
        # the wake zset it names at run time is moved first, so the script is stopped
        # at it (the list it pushes to, holding r3, is still on the source).
        source.hset(keys.queue_redeliveries(queue), "unrelated", 1)
        source.zadd(keys.wake(queue), {"w": 0})
        migration.begin()
        source.execute_command(
            "MIGRATE", "127.0.0.1", migration.target.port, "", 0, 5000, "KEYS", keys.wake(queue)
        )  # fmt: skip
        finisher = threading.Timer(0.5, migration.complete)
        finisher.start()
        consumer.release(got)  # stopped, then run again after MOVED
        finisher.join()
        again = consumer.fetch(10, timeout=2)
        assert sorted(d.body for d in again) == [b"r1", b"r2", b"r3"]
        assert consumer.fetch(10, timeout=0.2) == []
    finally:
        consumer.close()
        migration.complete()
