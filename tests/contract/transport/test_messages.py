"""The transport contract, moving messages: every transport (redis, sqlite, memory)
passes every test here, talking to ``conveyor/stores/transport.py`` only.
"""

from __future__ import annotations

import threading
import time

import pytest

from conveyor.stores.transport import Transport

from ..conftest import MakeTransport
from .helpers import LEASE, bodies, consume, fetch_all, give_back, timed


def test_publish_fetch_ack(transport: Transport) -> None:
    transport.publish("q", [b"a", b"b", b"c"])
    consumer = consume(transport)
    got = consumer.fetch(10, 1.0)
    assert bodies(got) == [b"a", b"b", b"c"]
    assert all(d.queue == "q" and d.priority == 0 and d.deliveries == 1 for d in got)
    assert not any(d.redelivered for d in got)
    assert len({d.tag for d in got}) == 3
    for d in got:
        consumer.ack(d)
    consumer.flush()
    assert consumer.fetch(10, 0) == []
    assert give_back(transport, consumer) == 0  # nothing left in flight
    consumer.close()


def test_fifo_within_a_priority_across_publishes(transport: Transport) -> None:
    for i in range(5):
        transport.publish("q", [f"m{i}".encode()])
    transport.publish("q", [b"m5", b"m6"])
    assert bodies(fetch_all(consume(transport), limit=3)) == [f"m{i}".encode() for i in range(7)]


def test_fetch_limit_is_bounded(transport: Transport) -> None:
    transport.publish("q", [str(i).encode() for i in range(10)])
    consumer = consume(transport)
    assert len(consumer.fetch(3, 1.0)) == 3
    assert len(consumer.fetch(1, 1.0)) == 1
    assert len(consumer.fetch(100, 1.0)) == 6


def test_priorities_zero_is_served_first(transport: Transport) -> None:
    transport.publish("q", [b"p5"], priority=5)
    transport.publish("q", [b"p9"], priority=9)
    transport.publish("q", [b"p0-a"], priority=0)
    transport.publish("q", [b"p5-b"], priority=5)
    transport.publish("q", [b"p0-b"])
    got = fetch_all(consume(transport), limit=2)
    assert bodies(got) == [b"p0-a", b"p0-b", b"p5", b"p5-b", b"p9"]
    assert [d.priority for d in got] == [0, 0, 5, 5, 9]


def test_bad_priority_is_refused(transport: Transport) -> None:
    with pytest.raises(ValueError):
        transport.publish("q", [b"x"], priority=10)
    with pytest.raises(ValueError):
        transport.publish("q", [b"x"], priority=-1)


def test_consumer_serves_every_queue_it_names(transport: Transport) -> None:
    transport.publish("a", [b"a1", b"a2"])
    transport.publish("b", [b"b1"])
    got = fetch_all(consume(transport, queues=("a", "b")), limit=1)
    assert sorted(bodies(got)) == [b"a1", b"a2", b"b1"]
    assert {d.body: d.queue for d in got} == {b"a1": "a", b"a2": "a", b"b1": "b"}


def test_bulk_publish_delivers_each_message_once_to_concurrent_consumers(
    make_transport: MakeTransport,
) -> None:
    publisher = make_transport()
    publisher.publish("q", [str(i).encode() for i in range(2000)])
    seen: list[bytes] = []
    lock = threading.Lock()

    def drain(name: str) -> None:
        consumer = make_transport().consumer(["q"], name, LEASE)
        while True:
            got = consumer.fetch(7, 0.2)
            if not got:
                return
            for d in got:
                consumer.ack(d)
            with lock:
                seen.extend(bodies(got))

    threads = [threading.Thread(target=drain, args=(f"c{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seen, key=int) == [str(i).encode() for i in range(2000)]


def test_fetch_times_out_empty(transport: Transport) -> None:
    got, took = timed(lambda: consume(transport).fetch(5, 0.3))
    assert got == []
    assert 0.28 <= took < 0.6


def test_fetch_wakes_promptly_when_a_message_arrives(make_transport: MakeTransport) -> None:
    consumer = consume(make_transport())
    publisher = make_transport()
    timer = threading.Timer(0.2, lambda: publisher.publish("q", [b"hello"]))
    timer.start()
    got, took = timed(lambda: consumer.fetch(1, 5.0))
    timer.join()
    assert bodies(got) == [b"hello"]  # type: ignore[arg-type]
    assert took < 0.3, f"woke {took - 0.2:.3f}s after the publish"


def test_a_later_publish_wakes_a_waiting_consumer_too(make_transport: MakeTransport) -> None:
    """Redis queues a publisher's first message to a queue with enqueue.lua and the
    later ones with plain LPUSH + wake (transport.py, _Push): both must wake."""
    consumer = consume(make_transport())
    publisher = make_transport()
    publisher.publish("q", [b"first"])
    assert bodies(consumer.fetch(1, 5.0)) == [b"first"]
    timer = threading.Timer(0.2, lambda: publisher.publish("q", [b"second"], priority=3))
    timer.start()
    got, took = timed(lambda: consumer.fetch(1, 5.0))
    timer.join()
    assert bodies(got) == [b"second"]  # type: ignore[arg-type]
    # Without its wake the fetch would sleep its whole 5 s; the margin is for a loaded
    # machine (this test is about the wake, not its latency: the test above is).
    assert took < 2.0, f"woke {took - 0.2:.3f}s after the publish"


def test_a_bulk_publish_larger_than_a_chunk_arrives_whole_and_in_order(
    transport: Transport,
) -> None:
    # Over two of Redis's 10,000-body LPUSH chunks, after a first publish (the script).
    transport.publish("q", [b"start"])
    sent = [b"%d" % i for i in range(21_000)]
    transport.publish("q", sent)
    got = bodies(fetch_all(consume(transport), limit=1000))
    assert got == [b"start", *sent]


def test_publishing_nothing_is_a_no_op(transport: Transport) -> None:
    transport.publish("q", [b"a"])
    transport.publish("q", [])
    assert bodies(fetch_all(consume(transport))) == [b"a"]


@pytest.mark.amqp_cannot
@pytest.mark.parametrize("how", ["countdown", "eta"])
def test_eta_is_held_in_the_broker_and_starts_on_time(transport: Transport, how: str) -> None:
    consumer = consume(transport)
    sent = time.time()
    if how == "countdown":
        transport.publish("q", [b"later"], countdown=0.3)
    else:
        transport.publish("q", [b"later"], eta=sent + 0.3)
    transport.publish("q", [b"now"])
    assert bodies(consumer.fetch(10, 0)) == [b"now"]
    stats = {q.name: q for q in transport.queues()}
    assert stats["q"].scheduled == 1 and stats["q"].ready == 0
    got = consumer.fetch(10, 2.0)
    late = time.time() - (sent + 0.3)
    assert bodies(got) == [b"later"]
    assert -0.01 <= late < 0.1, f"started {late:+.3f}s from due"


def test_eta_in_the_past_is_ready_now(transport: Transport) -> None:
    transport.publish("q", [b"late"], eta=time.time() - 60)
    assert bodies(consume(transport).fetch(1, 0.5)) == [b"late"]


def test_many_etas_start_in_due_order(transport: Transport) -> None:
    for delay in (0.4, 0.1, 0.25):
        transport.publish("q", [str(delay).encode()], countdown=delay)
    consumer = consume(transport)
    order = [bodies(consumer.fetch(1, 2.0))[0] for _ in range(3)]
    assert order == [b"0.1", b"0.25", b"0.4"]


@pytest.mark.amqp_cannot
def test_queues_report_depth_by_priority_and_scheduled(transport: Transport) -> None:
    transport.publish("q", [b"a", b"b"])
    transport.publish("q", [b"c"], priority=3)
    transport.publish("q", [b"later"], countdown=60)
    transport.publish("other", [b"x"])
    stats = {s.name: s for s in transport.queues()}
    assert set(stats) == {"q", "other"}
    assert (stats["q"].ready, stats["q"].scheduled) == (3, 1)
    assert stats["q"].by_priority == {0: 2, 3: 1}
    assert (stats["other"].ready, stats["other"].scheduled) == (1, 0)
    consume(transport).fetch(10, 0)  # leased messages are no longer waiting
    stats = {s.name: s for s in transport.queues()}
    assert (stats["q"].ready, stats["q"].scheduled) == (0, 1)


def test_purge_deletes_waiting_and_scheduled_messages_only(transport: Transport) -> None:
    transport.publish("q", [b"a", b"b", b"c"])
    transport.publish("q", [b"later", b"later2"], countdown=60)
    transport.publish("other", [b"keep"])
    consumer = consume(transport)
    running = consumer.fetch(1, 1.0)
    assert transport.purge(["q"]) == 4
    stats = {s.name: s for s in transport.queues()}
    assert (stats["q"].ready, stats["q"].scheduled) == (0, 0)
    assert stats["other"].ready == 1
    assert give_back(transport, consumer) == len(running) == 1  # what was running is untouched
