"""The broker contract: every broker (redis, sqlite, memory) passes every test here.

Each test talks to the interface in ``conveyor/stores/transport.py`` only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from conveyor.stores.results import ResultBackend
from conveyor.stores.transport import Broker, BrokerConsumer, Delivery, ResultWrite

from .conftest import MakeBroker

LEASE = 10.0


def consume(broker: Broker, name: str = "c1", queues: tuple[str, ...] = ("q",),
            lease: float = LEASE) -> BrokerConsumer:
    return broker.consumer(list(queues), name, lease)


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.body for d in deliveries]


def fetch_all(consumer: BrokerConsumer, limit: int = 100) -> list[Delivery]:
    """Everything waiting now (fetch returns at most ``limit`` per call)."""
    out: list[Delivery] = []
    while True:
        got = consumer.fetch(limit, 0)
        if not got:
            return out
        out.extend(got)


def timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started


# publish, fetch, ack --------------------------------------------------------------------


def test_publish_fetch_ack(broker: Broker) -> None:
    broker.publish("q", [b"a", b"b", b"c"])
    consumer = consume(broker)
    got = consumer.fetch(10, 1.0)
    assert bodies(got) == [b"a", b"b", b"c"]
    assert all(d.queue == "q" and d.priority == 0 and d.deliveries == 1 for d in got)
    assert not any(d.redelivered for d in got)
    assert len({d.tag for d in got}) == 3
    for d in got:
        consumer.ack(d)
    consumer.flush()
    assert consumer.fetch(10, 0) == []
    assert broker.reclaim("c1") == 0  # nothing left in flight
    consumer.close()


def test_fifo_within_a_priority_across_publishes(broker: Broker) -> None:
    for i in range(5):
        broker.publish("q", [f"m{i}".encode()])
    broker.publish("q", [b"m5", b"m6"])
    assert bodies(fetch_all(consume(broker), limit=3)) == [f"m{i}".encode() for i in range(7)]


def test_fetch_limit_is_bounded(broker: Broker) -> None:
    broker.publish("q", [str(i).encode() for i in range(10)])
    consumer = consume(broker)
    assert len(consumer.fetch(3, 1.0)) == 3
    assert len(consumer.fetch(1, 1.0)) == 1
    assert len(consumer.fetch(100, 1.0)) == 6


def test_priorities_zero_is_served_first(broker: Broker) -> None:
    broker.publish("q", [b"p5"], priority=5)
    broker.publish("q", [b"p9"], priority=9)
    broker.publish("q", [b"p0-a"], priority=0)
    broker.publish("q", [b"p5-b"], priority=5)
    broker.publish("q", [b"p0-b"])
    got = fetch_all(consume(broker), limit=2)
    assert bodies(got) == [b"p0-a", b"p0-b", b"p5", b"p5-b", b"p9"]
    assert [d.priority for d in got] == [0, 0, 5, 5, 9]


def test_bad_priority_is_refused(broker: Broker) -> None:
    with pytest.raises(ValueError):
        broker.publish("q", [b"x"], priority=10)
    with pytest.raises(ValueError):
        broker.publish("q", [b"x"], priority=-1)


def test_consumer_serves_every_queue_it_names(broker: Broker) -> None:
    broker.publish("a", [b"a1", b"a2"])
    broker.publish("b", [b"b1"])
    got = fetch_all(consume(broker, queues=("a", "b")), limit=1)
    assert sorted(bodies(got)) == [b"a1", b"a2", b"b1"]
    assert {d.body: d.queue for d in got} == {b"a1": "a", b"a2": "a", b"b1": "b"}


def test_bulk_publish_delivers_each_message_once_to_concurrent_consumers(
    make_broker: MakeBroker,
) -> None:
    publisher = make_broker()
    publisher.publish("q", [str(i).encode() for i in range(2000)])
    seen: list[bytes] = []
    lock = threading.Lock()

    def drain(name: str) -> None:
        consumer = make_broker().consumer(["q"], name, LEASE)
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


# waiting ------------------------------------------------------------------------------


def test_fetch_times_out_empty(broker: Broker) -> None:
    got, took = timed(lambda: consume(broker).fetch(5, 0.3))
    assert got == []
    assert 0.28 <= took < 0.6


def test_fetch_wakes_promptly_when_a_message_arrives(make_broker: MakeBroker) -> None:
    consumer = consume(make_broker())
    publisher = make_broker()
    timer = threading.Timer(0.2, lambda: publisher.publish("q", [b"hello"]))
    timer.start()
    got, took = timed(lambda: consumer.fetch(1, 5.0))
    timer.join()
    assert bodies(got) == [b"hello"]  # type: ignore[arg-type]
    assert took < 0.3, f"woke {took - 0.2:.3f}s after the publish"


# ETA and countdown --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["countdown", "eta"])
def test_eta_is_held_in_the_broker_and_starts_on_time(broker: Broker, how: str) -> None:
    consumer = consume(broker)
    sent = time.time()
    if how == "countdown":
        broker.publish("q", [b"later"], countdown=0.3)
    else:
        broker.publish("q", [b"later"], eta=sent + 0.3)
    broker.publish("q", [b"now"])
    assert bodies(consumer.fetch(10, 0)) == [b"now"]
    stats = {q.name: q for q in broker.queues()}
    assert stats["q"].scheduled == 1 and stats["q"].ready == 0
    got = consumer.fetch(10, 2.0)
    late = time.time() - (sent + 0.3)
    assert bodies(got) == [b"later"]
    assert -0.01 <= late < 0.1, f"started {late:+.3f}s from due"


def test_eta_in_the_past_is_ready_now(broker: Broker) -> None:
    broker.publish("q", [b"late"], eta=time.time() - 60)
    assert bodies(consume(broker).fetch(1, 0.5)) == [b"late"]


def test_many_etas_start_in_due_order(broker: Broker) -> None:
    for delay in (0.4, 0.1, 0.25):
        broker.publish("q", [str(delay).encode()], countdown=delay)
    consumer = consume(broker)
    order = [bodies(consumer.fetch(1, 2.0))[0] for _ in range(3)]
    assert order == [b"0.1", b"0.25", b"0.4"]


# release, reclaim, renew --------------------------------------------------------------


def test_release_gives_unstarted_messages_back_to_the_front(broker: Broker) -> None:
    broker.publish("q", [b"a", b"b", b"c"])
    consumer = consume(broker)
    first = consumer.fetch(2, 1.0)
    assert bodies(first) == [b"a", b"b"]
    consumer.release(first)
    again = consumer.fetch(10, 1.0)
    assert bodies(again) == [b"a", b"b", b"c"]
    # A message that never started was not tried: its delivery count is unchanged.
    assert [d.deliveries for d in again] == [1, 1, 1]


def test_broker_release_is_the_same_from_another_thread(broker: Broker) -> None:
    broker.publish("q", [b"a", b"b"])
    consumer = consume(broker)
    got = consumer.fetch(2, 1.0)
    errors: list[BaseException] = []

    def give_back() -> None:
        try:
            broker.release("c1", got[1:])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=give_back)
    thread.start()
    thread.join(5)
    assert not errors
    assert bodies(consume(broker, "c2").fetch(10, 1.0)) == [b"b"]


def test_reclaim_after_lease_expiry_redelivers_with_a_count(make_broker: MakeBroker) -> None:
    broker = make_broker()
    broker.publish("q", [b"a", b"b", b"c"])
    dead = consume(broker, "dead", lease=0.3)
    assert bodies(dead.fetch(2, 1.0)) == [b"a", b"b"]
    assert broker.reclaim() == 0  # still leased
    time.sleep(0.4)
    assert make_broker().reclaim() == 2
    got = consume(broker, "alive").fetch(10, 1.0)
    # Back at the front, in their original order.
    assert bodies(got) == [b"a", b"b", b"c"]
    assert [d.deliveries for d in got] == [2, 2, 1]
    assert [d.redelivered for d in got] == [True, True, False]


def test_delivery_count_grows_with_each_reclaim(broker: Broker) -> None:
    broker.publish("q", [b"poison"])
    for attempt in range(1, 4):
        got = consume(broker, f"c{attempt}").fetch(1, 1.0)
        assert [d.deliveries for d in got] == [attempt]
        assert broker.reclaim(f"c{attempt}") == 1


def test_reclaim_of_a_named_consumer_is_immediate(broker: Broker) -> None:
    broker.publish("q", [b"a"])
    consume(broker, "gone").fetch(1, 1.0)
    assert broker.reclaim("gone") == 1
    assert broker.reclaim("gone") == 0
    assert bodies(consume(broker, "next").fetch(1, 1.0)) == [b"a"]


def test_renew_keeps_leases_alive(broker: Broker) -> None:
    broker.publish("q", [b"long"])
    consumer = consume(broker, "busy", lease=0.3)
    assert consumer.fetch(1, 1.0)
    until = time.monotonic() + 1.0  # more than three leases
    while time.monotonic() < until:
        broker.renew(["busy"], 0.3)
        assert broker.reclaim() == 0
        time.sleep(0.08)
    time.sleep(0.4)  # it stops renewing: now the lease lapses
    assert broker.reclaim() == 1


def test_a_late_ack_from_a_reclaimed_consumer_does_not_drop_the_new_lease(
    broker: Broker,
) -> None:
    broker.publish("q", [b"a"])
    old = consume(broker, "old")
    stale = old.fetch(1, 1.0)[0]
    broker.reclaim("old")
    new = consume(broker, "new")
    assert bodies(new.fetch(1, 1.0)) == [b"a"]
    old.ack(stale)
    old.flush()
    assert broker.reclaim("new") == 1  # still leased to "new" until it acks


def test_recover_gives_back_leases_the_consumer_does_not_know(broker: Broker) -> None:
    broker.publish("q", [b"a", b"b", b"c"])
    consumer = consume(broker)
    got = consumer.fetch(3, 1.0)
    assert consumer.recover({got[0].tag}) == 2
    assert bodies(consume(broker, "c2").fetch(10, 1.0)) == [b"b", b"c"]


# results with the ack -----------------------------------------------------------------


def test_a_colocated_backend_stores_the_result_with_the_ack(
    broker: Broker, backend: ResultBackend
) -> None:
    assert broker.colocated_with(backend)
    broker.publish("q", [b"task"])
    consumer = broker.consumer(["q"], "c1", LEASE, results=backend)
    assert consumer.carries_results
    delivery = consumer.fetch(1, 1.0)[0]
    assert consumer.store(ResultWrite("t-1", b'{"status":"STARTED"}', False))
    consumer.flush()
    assert backend.get("t-1") == b'{"status":"STARTED"}'
    consumer.ack(delivery, ResultWrite("t-1", b'{"status":"SUCCESS"}', True))
    consumer.flush()
    assert backend.wait("t-1", 2.0) == b'{"status":"SUCCESS"}'
    assert broker.reclaim("c1") == 0


# dead letters, inspection, purge, workers ---------------------------------------------


def test_dead_letters_keep_the_body_and_the_reason(broker: Broker) -> None:
    before = time.time()
    broker.dead_letter(b"\x00\xffraw", "q", "undecodable")
    broker.dead_letter(b"second", "other", "unknown task")
    letters = broker.dead_letters()
    assert [(d.body, d.queue, d.reason) for d in letters] == [
        (b"second", "other", "unknown task"),
        (b"\x00\xffraw", "q", "undecodable"),
    ]
    assert all(before - 1 <= d.time <= time.time() + 1 for d in letters)
    assert len({d.id for d in letters}) == 2
    assert len(broker.dead_letters(limit=1)) == 1


def test_queues_report_depth_by_priority_and_scheduled(broker: Broker) -> None:
    broker.publish("q", [b"a", b"b"])
    broker.publish("q", [b"c"], priority=3)
    broker.publish("q", [b"later"], countdown=60)
    broker.publish("other", [b"x"])
    stats = {s.name: s for s in broker.queues()}
    assert set(stats) == {"q", "other"}
    assert (stats["q"].ready, stats["q"].scheduled) == (3, 1)
    assert stats["q"].by_priority == {0: 2, 3: 1}
    assert (stats["other"].ready, stats["other"].scheduled) == (1, 0)
    consume(broker).fetch(10, 0)  # leased messages are no longer waiting
    stats = {s.name: s for s in broker.queues()}
    assert (stats["q"].ready, stats["q"].scheduled) == (0, 1)


def test_purge_deletes_waiting_and_scheduled_messages_only(broker: Broker) -> None:
    broker.publish("q", [b"a", b"b", b"c"])
    broker.publish("q", [b"later", b"later2"], countdown=60)
    broker.publish("other", [b"keep"])
    leased = consume(broker).fetch(1, 1.0)
    assert broker.purge(["q"]) == 4
    stats = {s.name: s for s in broker.queues()}
    assert (stats["q"].ready, stats["q"].scheduled) == (0, 0)
    assert stats["other"].ready == 1
    assert broker.reclaim("c1") == len(leased) == 1  # what was running is untouched


def test_workers_registry_with_ttl(broker: Broker) -> None:
    broker.announce_worker("w1@host", {"hostname": "w1@host", "pid": 1}, ttl=10)
    broker.announce_worker("w2@host", {"hostname": "w2@host", "pid": 2}, ttl=0.3)
    assert sorted(w["hostname"] for w in broker.workers()) == ["w1@host", "w2@host"]
    broker.announce_worker("w1@host", {"hostname": "w1@host", "pid": 3}, ttl=10)
    assert [w["pid"] for w in broker.workers() if w["hostname"] == "w1@host"] == [3]
    time.sleep(0.4)
    assert [w["hostname"] for w in broker.workers()] == ["w1@host"]  # w2's heartbeat lapsed
    broker.retire_worker("w1@host")
    assert broker.workers() == []
