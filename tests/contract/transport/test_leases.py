"""The transport contract for leased deliveries (``LeasedDeliveries``): release, reclaim,
renew, recover, discard and defer, on every transport that leases (all of ours).
"""

from __future__ import annotations

import threading
import time

import pytest

from conveyor.stores.transport import Transport

from ..conftest import KINDS, MakeTransport
from .helpers import bodies, consume, fetch_all, leased


# Leases are a capability: the transports that lease (not AMQP, whose deliveries end with
# their connection; tests/integration/test_rabbitmq.py covers what it does instead).
@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_release_gives_unstarted_messages_back_to_the_front(transport: Transport) -> None:
    transport.publish("q", [b"a", b"b", b"c"])
    consumer = consume(transport)
    first = consumer.fetch(2, 1.0)
    assert bodies(first) == [b"a", b"b"]
    consumer.release(first)
    again = consumer.fetch(10, 1.0)
    assert bodies(again) == [b"a", b"b", b"c"]
    # A message that never started was not tried: its delivery count is unchanged.
    assert [d.deliveries for d in again] == [1, 1, 1]


def test_broker_release_is_the_same_from_another_thread(transport: Transport) -> None:
    transport.publish("q", [b"a", b"b"])
    consumer = consume(transport)
    got = consumer.fetch(2, 1.0)
    errors: list[BaseException] = []

    def give_back() -> None:
        try:
            transport.release("c1", got[1:])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=give_back)
    thread.start()
    thread.join(5)
    assert not errors
    assert bodies(consume(transport, "c2").fetch(10, 1.0)) == [b"b"]


def test_reclaim_after_lease_expiry_redelivers_with_a_count(make_transport: MakeTransport) -> None:
    transport = make_transport()
    transport.publish("q", [b"a", b"b", b"c"])
    dead = consume(transport, "dead", lease=0.3)
    assert bodies(dead.fetch(2, 1.0)) == [b"a", b"b"]
    assert leased(transport).reclaim() == 0  # still leased
    time.sleep(0.4)
    assert leased(make_transport()).reclaim() == 2
    got = consume(transport, "alive").fetch(10, 1.0)
    # Back at the front, in their original order.
    assert bodies(got) == [b"a", b"b", b"c"]
    assert [d.deliveries for d in got] == [2, 2, 1]
    assert [d.redelivered for d in got] == [True, True, False]


def test_delivery_count_grows_with_each_reclaim(transport: Transport) -> None:
    transport.publish("q", [b"poison"])
    for attempt in range(1, 4):
        got = consume(transport, f"c{attempt}").fetch(1, 1.0)
        assert [d.deliveries for d in got] == [attempt]
        assert leased(transport).reclaim(f"c{attempt}") == 1


def test_reclaim_of_a_named_consumer_is_immediate(transport: Transport) -> None:
    transport.publish("q", [b"a"])
    consume(transport, "gone").fetch(1, 1.0)
    assert leased(transport).reclaim("gone") == 1
    assert leased(transport).reclaim("gone") == 0
    assert bodies(consume(transport, "next").fetch(1, 1.0)) == [b"a"]


def test_renew_keeps_leases_alive(transport: Transport) -> None:
    transport.publish("q", [b"long"])
    consumer = consume(transport, "busy", lease=0.3)
    assert consumer.fetch(1, 1.0)
    until = time.monotonic() + 1.0  # more than three leases
    while time.monotonic() < until:
        leased(transport).renew(["busy"], 0.3)
        assert leased(transport).reclaim() == 0
        time.sleep(0.08)
    time.sleep(0.4)  # it stops renewing: now the lease lapses
    assert leased(transport).reclaim() == 1


def test_a_late_ack_from_a_reclaimed_consumer_does_not_drop_the_new_lease(
    transport: Transport,
) -> None:
    transport.publish("q", [b"a"])
    old = consume(transport, "old")
    stale = old.fetch(1, 1.0)[0]
    leased(transport).reclaim("old")
    new = consume(transport, "new")
    assert bodies(new.fetch(1, 1.0)) == [b"a"]
    old.ack(stale)
    old.flush()
    assert leased(transport).reclaim("new") == 1  # still leased to "new" until it acks


def test_recover_gives_back_leases_the_consumer_does_not_know(transport: Transport) -> None:
    transport.publish("q", [b"a", b"b", b"c"])
    consumer = consume(transport)
    got = consumer.fetch(3, 1.0)
    assert consumer.recover({got[0].tag}) == 2
    assert bodies(consume(transport, "c2").fetch(10, 1.0)) == [b"b", b"c"]


def test_discard_ends_a_lease_without_requeueing(transport: Transport) -> None:
    transport.publish("q", [b"killed", b"unstarted"])
    consumer = consume(transport, "c-dead")
    killed, _unstarted = consumer.fetch(10, 1.0)
    leased(transport).discard("c-dead", [killed.tag])
    assert leased(transport).reclaim("c-dead") == 1  # only the unstarted one goes back
    assert bodies(fetch_all(consume(transport, "c2"))) == [b"unstarted"]


def test_a_deferred_message_comes_back_when_due_without_counting_a_delivery(
    transport: Transport,
) -> None:
    transport.publish("q", [b"body"], priority=3)
    consumer = transport.consumer(["q"], "c1", 10)
    (delivery,) = consumer.fetch(1, timeout=1)
    deferred_at = time.monotonic()
    leased(transport).defer("c1", delivery, 0.3)
    (stats,) = [s for s in transport.queues() if s.name == "q"]
    assert (stats.ready, stats.scheduled) == (0, 1)
    (again,) = consumer.fetch(1, timeout=2)
    assert time.monotonic() - deferred_at >= 0.28
    assert (again.body, again.priority, again.deliveries) == (b"body", 3, 1)
    consumer.close()
