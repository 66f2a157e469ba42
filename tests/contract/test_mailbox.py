"""The control mailbox (stores/mailbox.py) on every store: what inspect/control rely on."""

from __future__ import annotations

import threading
import time

from conveyor.stores.mailbox import mailbox_for

from .conftest import MakeTransport


def test_commands_reach_only_their_workers_in_order(make_transport: MakeTransport) -> None:
    client, worker = make_transport(), make_transport()
    mailbox_for(client).post(["w1@h", "w2@h"], b"first", ttl=5)
    mailbox_for(client).post(["w1@h"], b"second", ttl=5)
    assert mailbox_for(worker).take("w1@h") == [b"first", b"second"]
    assert mailbox_for(worker).take("w1@h") == []
    assert mailbox_for(worker).take("w2@h") == [b"first"]
    assert mailbox_for(worker).take("w3@h") == []


def test_take_is_bounded(make_transport: MakeTransport) -> None:
    transport = make_transport()
    mailbox = mailbox_for(transport)
    for i in range(5):
        mailbox.post(["w@h"], str(i).encode(), ttl=5)
    assert mailbox.take("w@h", limit=3) == [b"0", b"1", b"2"]
    assert mailbox.take("w@h", limit=3) == [b"3", b"4"]


def test_collect_returns_the_answers_that_came(make_transport: MakeTransport) -> None:
    client, worker = make_transport(), make_transport()
    mailbox_for(worker).answer("r1", b"from w1", ttl=5)
    mailbox_for(worker).answer("r2", b"other", ttl=5)
    # Two expected, one came: collect waits out its timeout and returns what it has.
    assert mailbox_for(client).collect("r1", expected=2, timeout=0.3) == [b"from w1"]
    assert mailbox_for(client).collect("r2", expected=1, timeout=5) == [b"other"]


def test_collect_wakes_for_an_answer_given_while_it_waits(make_transport: MakeTransport) -> None:
    client, worker = make_transport(), make_transport()

    def answer_soon() -> None:
        time.sleep(0.2)
        mailbox_for(worker).answer("r", b"late but in time", ttl=5)

    thread = threading.Thread(target=answer_soon)
    thread.start()
    try:
        assert mailbox_for(client).collect("r", expected=1, timeout=10) == [b"late but in time"]
    finally:
        thread.join()


def test_held_lists_a_consumers_leases(make_transport: MakeTransport) -> None:
    transport = make_transport()
    transport.publish("q", [b"one", b"two", b"three"])
    consumer = transport.consumer(["q"], "c1", lease_seconds=10)
    deliveries = consumer.fetch(2, timeout=1)
    held = dict(mailbox_for(transport).held("c1"))
    assert held == {d.tag: d.body for d in deliveries}
    assert sorted(held.values()) == [b"one", b"two"]
    assert mailbox_for(transport).held("nobody") == []
    consumer.close()
