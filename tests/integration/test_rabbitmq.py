"""The RabbitMQ transport against the suite's own node: what AMQP gives that the
contract suite cannot ask of every transport (a dead consumer's messages return with
its connection, confirms, the node restarting under load, quorum queues, errors).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conveyor.exceptions import BrokerUnavailable, ConfigurationError
from conveyor.stores import transport_from_url
from conveyor.stores.rabbitmq.topology import DEAD_LETTER_QUEUE
from conveyor.stores.rabbitmq.transport import AmqpTransport
from conveyor.stores.transport import Delivery, Transport

from ..support import free_port, wait_for
from ..support_rabbitmq import RabbitNode

pytestmark = pytest.mark.timeout(120)

HOLDER = """
import sys, time
from conveyor.stores.rabbitmq.transport import AmqpTransport
consumer = AmqpTransport(sys.argv[1]).consumer(["q"], "holder", 10)
got = []
while not got:
    got = consumer.fetch(5, 1.0)
print(len(got), flush=True)
time.sleep(600)  # "running" its tasks until SIGKILLed
"""


def amqp(url: str, **options: object) -> AmqpTransport:
    transport = transport_from_url(url, **options)
    assert isinstance(transport, AmqpTransport)
    return transport


def drain(transport: Transport, queue: str, want: int, timeout: float) -> list[Delivery]:
    consumer = transport.consumer([queue], f"drain-{queue}", 10)
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        batch = consumer.fetch(50, 0.5)
        for delivery in batch:
            consumer.ack(delivery)
        got.extend(batch)
    consumer.close()
    return got


def test_schemes_dispatch_to_the_amqp_transport(amqp_url: str) -> None:
    for url in (amqp_url, amqp_url.replace("amqp://", "pyamqp://", 1)):
        transport = transport_from_url(url)
        assert isinstance(transport, AmqpTransport)
        transport.close()


def test_a_sigkilled_consumers_deliveries_return_at_once(amqp_url: str, tmp_path: Path) -> None:
    transport = amqp(amqp_url)
    transport.publish("q", [b"a", b"b", b"c"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, amqp_url], stdout=subprocess.PIPE, env=env,
        start_new_session=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == b"3"
    other = transport.consumer(["q"], "other", 10)
    assert other.fetch(5, 0.5) == []  # held by the live consumer: no timeout takes them
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(10)
    holder.stdout.close()
    killed_at = time.monotonic()
    got: list[Delivery] = []
    while len(got) < 3 and time.monotonic() - killed_at < 10:
        got.extend(other.fetch(5, 0.5))
    assert sorted(d.body for d in got) == [b"a", b"b", b"c"]
    # counted: each was delivered once before, to the worker that died
    assert [d.deliveries for d in got] == [2, 2, 2]
    transport.close()


def test_a_message_killing_its_worker_every_time_is_counted(amqp_url: str) -> None:
    transport = amqp(amqp_url)
    transport.publish("q", [b"poison"])
    for attempt in range(1, 4):
        consumer = transport.consumer(["q"], f"c{attempt}", 10)
        (delivery,) = consumer.fetch(1, 2.0)
        assert delivery.deliveries == attempt
        consumer.close()  # the connection dies with the delivery unacked
    transport.close()


def test_release_keeps_order_and_count(amqp_url: str) -> None:
    transport = amqp(amqp_url)
    transport.publish("q", [b"a", b"b"])
    consumer = transport.consumer(["q"], "c1", 10)
    got = consumer.fetch(2, 1.0)
    consumer.release(got)
    again = consumer.fetch(2, 1.0)
    assert [(d.body, d.deliveries) for d in again] == [(b"a", 1), (b"b", 1)]
    transport.close()


def test_prefetch_is_what_the_loop_holds_plus_what_it_asks(amqp_url: str) -> None:
    """A worker busy with one slow task does not sit on the fast ones behind it."""
    transport = amqp(amqp_url)
    transport.publish("q", [b"slow"] + [b"fast"] * 20)
    busy = transport.consumer(["q"], "busy", 10)
    assert [d.body for d in busy.fetch(1, 1.0)] == [b"slow"]
    idle = transport.consumer(["q"], "idle", 10)
    assert len(drain_with(idle, 20)) == 20
    transport.close()


def drain_with(consumer: object, want: int) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        batch = consumer.fetch(5, 0.5)  # type: ignore[attr-defined]
        for delivery in batch:
            consumer.ack(delivery)  # type: ignore[attr-defined]
        got.extend(batch)
    return got


def test_long_countdowns_wait_in_the_broker_in_due_order(amqp_url: str) -> None:
    transport = amqp(amqp_url)
    consumer = transport.consumer(["q"], "c1", 10)
    transport.publish("q", [b"in-a-day"], countdown=86_400)
    transport.publish("q", [b"soon"], countdown=0.2)
    got = consumer.fetch(5, 3.0)
    assert [d.body for d in got] == [b"soon"]
    assert consumer.fetch(5, 0.5) == []
    transport.close()


def test_purge_drops_a_queues_scheduled_messages_and_keeps_others_due_on_time(
    amqp_url: str,
) -> None:
    """The delay levels are shared: purging "q" reads them through, drops q's messages
    and sends the others on for the time they had left (not a new full delay)."""
    transport = amqp(amqp_url)
    consumer = transport.consumer(["other"], "c1", 10)
    transport.publish("q", [b"later", b"much later"], countdown=60)
    sent = time.monotonic()
    transport.publish("other", [b"keep"], countdown=1.5)
    transport.publish("q", [b"now"])
    assert transport.scheduled_total() == 3
    assert transport.purge(["q"]) == 3
    assert transport.scheduled_total() == 1
    got = consumer.fetch(1, 5.0)
    assert [d.body for d in got] == [b"keep"]
    assert 1.3 < time.monotonic() - sent < 2.5
    transport.close()


def test_wrong_password_is_a_configuration_error(rabbit_node: RabbitNode) -> None:
    url = f"amqp://guest:wrong@127.0.0.1:{rabbit_node.port}//"
    with pytest.raises(ConfigurationError, match="refused the login") as caught:
        amqp(url, retry_on_startup=False).publish("q", [b"x"])
    assert "wrong" not in str(caught.value)


def test_no_retry_on_startup_fails_at_once_when_nothing_listens() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        amqp(url, retry_on_startup=False).publish("q", [b"x"])
    assert time.monotonic() - started < 5


def test_quorum_queues_count_deliveries_and_dead_letter_past_the_limit(amqp_url: str) -> None:
    transport = amqp(amqp_url, transport_options={"queue_type": "quorum", "delivery_limit": 2})
    transport.publish("qq", [b"poison"])
    with pytest.raises(ValueError, match="quorum"):
        transport.publish("qq", [b"x"], priority=3)
    seen = []
    for attempt in range(3):
        consumer = transport.consumer(["qq"], f"c{attempt}", 10)
        seen.extend(d.deliveries for d in consumer.fetch(1, 2.0))
        consumer.close()
    assert seen == [1, 2, 3]
    probe = transport.consumer(["qq"], "probe", 10)
    assert probe.fetch(1, 1.0) == []  # past the limit: RabbitMQ took it out of the queue
    letters = drain(transport, DEAD_LETTER_QUEUE, 1, 5)
    assert [d.body for d in letters] == [b"poison"]
    transport.close()


@pytest.mark.chaos
@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill-9"])
def test_node_restart_under_load_loses_nothing_confirmed(
    tmp_path: Path, crash: bool
) -> None:
    """Producers and a consumer go on through a restart of the node; every message whose
    publish returned is consumed (some may come twice: at least once).

    The consumer judges "all consumed" only once the producer has stopped: a publish
    still in flight when the stop is asked is appended to ``confirmed`` after its
    confirm, while the message itself may already sit unread in the consumer's
    prefetch. Judged earlier, that last message looked lost (neither consumed nor
    ready in the queue): the "graceful stop loses one confirmed message" seen in full
    runs was this race in the test, reproduced without any restart."""
    node = RabbitNode(tmp_path)
    node.start()
    try:
        url = node.url
        producer = amqp(url)
        consumer_side = amqp(url)
        consumer = consumer_side.consumer(["load"], "c1", 10)
        # The consumer's own publisher (for redelivered messages) connected before the
        # restart, so its reconnection is exercised too.
        consumer_side.publish("warm-up", [b"x"])
        confirmed: list[bytes] = []
        consumed: set[bytes] = set()
        stop = threading.Event()
        produced = threading.Event()  # the producer has returned: confirmed is final
        errors: list[BaseException] = []

        def produce() -> None:
            i = 0
            try:
                while not stop.is_set():
                    body = str(i).encode()
                    try:
                        producer.publish("load", [body])
                    except BrokerUnavailable:
                        continue  # not confirmed: not counted
                    confirmed.append(body)
                    i += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                produced.set()

        def consume() -> None:
            deadline = float("inf")
            while not (produced.is_set() and consumed >= set(confirmed)):
                for delivery in consumer.fetch(20, 0.3):
                    consumed.add(delivery.body)
                    consumer.ack(delivery)
                if produced.is_set():
                    deadline = min(deadline, time.monotonic() + 30)
                    if time.monotonic() > deadline:
                        return

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(consumed) > 50, 30, what="traffic before the restart")
        node.restart(crash=crash)
        before = len(confirmed)
        wait_for(lambda: len(confirmed) > before + 50, 60, what="publishing after the restart")
        stop.set()
        for thread in threads:
            thread.join(60)
        assert not errors
        missing = set(confirmed) - consumed
        left = {stats.name: stats.ready for stats in producer.queues()}
        assert not missing, (
            f"{len(missing)} confirmed messages not consumed, e.g. {sorted(missing)[:5]}; "
            f"waiting in the queue: {left}"
        )
        consumer.close()
        producer.close()
        consumer_side.close()
    finally:
        node.close()


def _held_past_the_timeout(url: str, hold: float) -> tuple[list[Delivery], list[Delivery]]:
    """A consumer takes a message and "runs" it for ``hold`` seconds, then acks it; another
    consumer watches the queue meanwhile. Returns what each of them got."""
    transport = amqp(url)
    transport.publish("long", [b"three-hour task"])
    runner = transport.consumer(["long"], "runner", 10)
    taken = runner.fetch(1, 2.0)
    watcher = transport.consumer(["long"], "watcher", 10)
    seen: list[Delivery] = []
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        for delivery in watcher.fetch(1, 0.2):
            seen.append(delivery)
            watcher.ack(delivery)
    for delivery in taken:
        runner.ack(delivery)  # on a closed channel: dropped with a warning, never a crash
    assert runner.fetch(1, 0.2) == []  # and the runner's loop goes on (reconnects)
    transport.close()
    return taken, seen


def test_a_task_held_past_consumer_timeout_is_not_redelivered_with_the_operator_setting(
    amqp_url: str,
) -> None:
    """The suite's node runs as docs/architecture.md tells an operator of RabbitMQ <
    3.11.15 (consumer_timeout off) and checks its channels every 200 ms: a delivery held
    3 s (past the 1 s timeout of the test below) stays with its live consumer."""
    taken, seen = _held_past_the_timeout(amqp_url, 3.0)
    assert [d.body for d in taken] == [b"three-hour task"]
    assert seen == []


def test_consumer_timeout_on_the_node_redelivers_a_long_task_before_rabbitmq_3_11_15(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What happens when the operator leaves consumer_timeout on (1 s here): from 3.11.15
    conveyor's per-consumer x-consumer-timeout overrides it and nothing is redelivered;
    before (the machine's 3.10), RabbitMQ closes the runner's channel and hands the task
    to another consumer, and conveyor says so with the setting to change. This is the
    failure mode the operator setting exists for, shown rather than assumed."""
    node = RabbitNode(tmp_path, consumer_timeout_ms=1000)
    node.start()
    try:
        probe = amqp(node.url)
        probe.queues()  # connects: the node's version is in its server properties
        version = probe._publisher.version
        probe.close()
        taken, seen = _held_past_the_timeout(node.url, 3.0)
    finally:
        node.close()
    assert [d.body for d in taken] == [b"three-hour task"]
    if version >= (3, 11, 15):
        assert seen == []
    else:
        assert [(d.body, d.deliveries) for d in seen] == [(b"three-hour task", 2)]
        assert "consumer_timeout" in caplog.text and "advanced.config" in caplog.text


def test_heartbeats_keep_a_busy_consumers_connection_while_its_task_runs(amqp_url: str) -> None:
    """A worker whose only thread runs a long task never reads its socket; the heartbeat
    thread answers for it. With a 1 s heartbeat, a delivery held 4 s without a single
    fetch is still this consumer's (RabbitMQ drops a silent connection after two
    missed heartbeats and would hand the task to the watcher, celery#5037)."""
    transport = amqp(f"{amqp_url}?heartbeat=1")
    transport.publish("busy", [b"long task"])
    runner = transport.consumer(["busy"], "runner", 10)
    (delivery,) = runner.fetch(1, 2.0)
    time.sleep(4.0)  # "running": no call on the runner's connection from this thread
    watcher = transport.consumer(["busy"], "watcher", 10)
    assert watcher.fetch(1, 0.5) == []
    runner.ack(delivery)
    assert runner._link.generation == 1  # the same connection all along: never lost
    transport.close()
