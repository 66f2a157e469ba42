"""Results behind AMQP acks (``StoreBehind``), against the suite's RabbitMQ node and
redis-server: a consumer writes a task's result on its own Redis link without waiting,
then acks; these are the crash windows of docs/architecture.md ("Results behind AMQP
acks") that can be driven from one process. The SIGKILL of a worker mid-drain is in
tests/chaos/test_rabbitmq_results_behind.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from conveyor.stores import transport_from_url
from conveyor.stores.rabbitmq.consumer import AmqpConsumer
from conveyor.stores.rabbitmq.transport import AmqpTransport
from conveyor.stores.redis.results import RedisBackend
from conveyor.stores.results import ResultMeta, decode_meta, encode_meta
from conveyor.stores.transport import Delivery, ResultWrite

from ..support import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

QUEUE = "behind"


@pytest.fixture(params=["", "?socket_timeout=5"], ids=["blocking", "socket-timeout"])
def stores(
    amqp_url: str, redis_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[AmqpTransport, RedisBackend]]:
    """The link reads what arrived without waiting, on a blocking socket (one recv) and
    on one with a timeout (poll first: its recv would wait up to the timeout)."""
    transport = transport_from_url(amqp_url)
    assert isinstance(transport, AmqpTransport)
    backend = RedisBackend(redis_url + request.param)
    yield transport, backend
    transport.close()
    backend.close()


def write_for(task_id: str, value: Any) -> ResultWrite:
    meta = ResultMeta(task_id=task_id, status="SUCCESS", result=value)
    return ResultWrite(task_id, encode_meta(meta), True)


def fetch(consumer: AmqpConsumer, want: int) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        got.extend(consumer.fetch(want - len(got), 0.5))
    assert len(got) == want
    return got


def ready(transport: AmqpTransport) -> int:
    return sum(stats.ready for stats in transport.queues() if stats.name == QUEUE)


def store_script_clients(admin: redis.Redis) -> set[str]:
    """The ids of the connections whose last command ran the store script (results
    links; the suite's Redis may still hold other tests' connections)."""
    clients: list[dict[str, Any]] = admin.client_list()
    return {str(c["id"]) for c in clients if c.get("cmd") in ("evalsha", "eval")}


def test_results_ride_behind_the_acks_and_are_confirmed_by_the_next_fetch(
    stores: tuple[AmqpTransport, RedisBackend],
) -> None:
    transport, backend = stores
    transport.publish(QUEUE, [b"one", b"two"])
    consumer = transport.consumer([QUEUE], "c-behind", 30, results=backend)
    assert isinstance(consumer, AmqpConsumer) and consumer.carries_results
    first, second = fetch(consumer, 2)
    consumer.ack(first, write_for("t-1", 1))
    started = ResultMeta(task_id="t-2", status="STARTED")
    assert consumer.store(ResultWrite("t-2", encode_meta(started), False))
    consumer.ack(second, write_for("t-2", 2))
    consumer.fetch(1, 0.2)  # idle: every result is confirmed before it waits
    assert [decode_meta(backend.get(t) or b"").result for t in ("t-1", "t-2")] == [1, 2]
    consumer.close()
    assert ready(transport) == 0  # both acked: nothing came back with the connection


def test_results_link_killed_between_store_and_ack_the_result_arrives_after_reconnect(
    stores: tuple[AmqpTransport, RedisBackend], redis_url: str
) -> None:
    """The store is written, Redis drops the connection before it runs it (CLIENT PAUSE
    holds the command unread, CLIENT KILL drops it with its buffer), the ack has left:
    the link notices, reconnects and sends the result again, while the loop is busy
    elsewhere (no fetch, no other store)."""
    transport, backend = stores
    admin = redis.Redis.from_url(redis_url)
    transport.publish(QUEUE, [b"warm", b"task"])
    consumer = transport.consumer([QUEUE], "c-killed", 30, results=backend)
    assert isinstance(consumer, AmqpConsumer)
    warm, task = fetch(consumer, 2)
    others = store_script_clients(admin)
    consumer.ack(warm, write_for("warm", 0))  # opens the results link
    consumer.flush()
    (link_id,) = store_script_clients(admin) - others
    admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
    try:
        consumer.ack(task, write_for("t-killed", 42))  # the store, then the ack, both sent
        admin.client_kill_filter(_id=link_id)
        assert backend.get("t-killed") is None  # the store was lost with its connection
        wait_for(lambda: ready(transport) == 0, 5, what="the ack to be applied")
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    wait_for(lambda: backend.get("t-killed") is not None, 5, what="the result, sent again")
    raw = backend.get("t-killed")
    assert raw is not None and decode_meta(raw).result == 42
    consumer.close()
    assert ready(transport) == 0  # acked once, not given back


def test_a_results_link_closed_while_a_task_ran_reconnects_before_the_next_ack(
    stores: tuple[AmqpTransport, RedisBackend], redis_url: str
) -> None:
    """Redis closed the link while a task ran (a restart, a client timeout): the next
    store notices before writing to the dead socket, so its result lands at once."""
    transport, backend = stores
    admin = redis.Redis.from_url(redis_url)
    transport.publish(QUEUE, [b"warm", b"task"])
    consumer = transport.consumer([QUEUE], "c-closed", 30, results=backend)
    assert isinstance(consumer, AmqpConsumer)
    warm, task = fetch(consumer, 2)
    others = store_script_clients(admin)
    consumer.ack(warm, write_for("warm", 0))
    consumer.flush()
    (link_id,) = store_script_clients(admin) - others
    admin.client_kill_filter(_id=link_id)
    consumer.ack(task, write_for("t-after", 7))
    wait_for(lambda: backend.get("t-after") is not None, 5, what="the result, without a fetch")
    consumer.close()


HOLDER = """
import sys, time
from conveyor.stores.rabbitmq.transport import AmqpTransport
from conveyor.stores.redis.results import RedisBackend
from conveyor.stores.results import ResultMeta, encode_meta
from conveyor.stores.transport import ResultWrite
backend = RedisBackend(sys.argv[2])
consumer = AmqpTransport(sys.argv[1]).consumer(["behind"], "held", 10, results=backend)
got = []
while not got:
    got = consumer.fetch(1, 1.0)
print("fetched", flush=True)
sys.stdin.readline()  # the test stops Redis, then says go
write = ResultWrite("t-held", encode_meta(ResultMeta(task_id="t-held", status="SUCCESS")), True)
consumer.ack(got[0], write)
print("acked", flush=True)
time.sleep(600)  # SIGKILLed here
"""


def test_an_ack_waits_while_the_result_backend_is_unreachable(
    amqp_url: str, redis_server: Any
) -> None:
    """Redis down: the result cannot be confirmed, so its ack is held and the message
    stays unacked; once Redis is back the next fetch stores the result, then acks."""
    transport = transport_from_url(amqp_url)
    assert isinstance(transport, AmqpTransport)
    backend = RedisBackend(redis_server.url)
    try:
        transport.publish(QUEUE, [b"task"])
        consumer = transport.consumer([QUEUE], "c-down", 30, results=backend)
        assert isinstance(consumer, AmqpConsumer)
        (task,) = fetch(consumer, 1)
        redis_server.stop()
        try:
            consumer.ack(task, write_for("t-down", 5))
        finally:
            redis_server.ensure_running()
        consumer.fetch(1, 0.2)
        raw = backend.get("t-down")
        assert raw is not None and decode_meta(raw).result == 5
        consumer.close()
        assert ready(transport) == 0
    finally:
        transport.close()
        backend.close()


def test_a_worker_killed_while_its_ack_waits_for_the_backend_gives_the_task_back(
    amqp_url: str, redis_server: Any
) -> None:
    """The held ack never left: a process SIGKILLed while Redis is down (its result
    unstored) gives its message back to the queue, to run again."""
    transport = transport_from_url(amqp_url)
    assert isinstance(transport, AmqpTransport)
    transport.publish(QUEUE, [b"task"])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, amqp_url, redis_server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdin is not None and holder.stdout is not None
        assert holder.stdout.readline().strip() == "fetched"
        redis_server.stop()
        try:
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "acked"
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
        finally:
            redis_server.ensure_running()
        wait_for(lambda: ready(transport) == 1, 10, what="the message back in its queue")
        backend = RedisBackend(redis_server.url)
        assert backend.get("t-held") is None
        backend.close()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=10)  # closes its pipes
        transport.close()
