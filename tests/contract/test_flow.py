"""The flow-control primitives every broker implements (issue 6): leader leases, beat's
schedule state, unique sends, the rate limiter, concurrency slots and deferral."""

from __future__ import annotations

import time

import pytest

from conveyor.stores.transport import Broker

from .conftest import MakeBroker

pytestmark = pytest.mark.timeout(30)


def test_a_lease_has_one_owner_until_it_expires_or_is_dropped(broker: Broker) -> None:
    assert broker.hold_lease("beat", "a", 0.5)
    assert not broker.hold_lease("beat", "b", 0.5)
    assert broker.hold_lease("beat", "a", 0.5)  # the owner renews
    broker.drop_lease("beat", "b")  # not b's to drop
    assert broker.lease_owner("beat") == "a"
    time.sleep(0.6)
    assert broker.hold_lease("beat", "b", 5)
    assert broker.lease_owner("beat") == "b"
    broker.drop_lease("beat", "b")
    assert broker.lease_owner("beat") is None
    assert broker.hold_lease("beat", "a", 5)


def test_schedule_state_is_shared(make_broker: MakeBroker) -> None:
    one, two = make_broker(), make_broker()
    assert one.schedule_state(["a", "b"]) == {}
    one.record_schedule_state({"a": 1700000000.25, "b": 5.0})
    one.record_schedule_state({"b": 6.5})
    assert two.schedule_state(["a", "b", "c"]) == {"a": 1700000000.25, "b": 6.5}


def test_a_unique_send_within_the_window_is_dropped(broker: Broker) -> None:
    assert broker.publish_unique("q", b"first", key="k", task_id="id-1", ttl=0.5) is None
    assert broker.publish_unique("q", b"second", key="k", task_id="id-2", ttl=0.5) == "id-1"
    assert broker.publish_unique("q", b"other", key="k2", task_id="id-3", ttl=0.5) is None
    assert _ready(broker, "q") == 2
    time.sleep(0.6)
    assert broker.publish_unique("q", b"third", key="k", task_id="id-4", ttl=5) is None
    assert _ready(broker, "q") == 3


def test_a_unique_send_can_wait_in_the_broker(broker: Broker) -> None:
    assert broker.publish_unique("q", b"later", key="k", task_id="x", ttl=5, countdown=30) is None
    (stats,) = [s for s in broker.queues() if s.name == "q"]
    assert (stats.ready, stats.scheduled) == (0, 1)


def test_the_rate_limiter_reserves_the_next_slot(broker: Broker) -> None:
    assert broker.acquire_rate("t", 10.0, "a") == 0
    wait_b = broker.acquire_rate("t", 10.0, "b")
    assert 0.05 < wait_b <= 0.1
    wait_c = broker.acquire_rate("t", 10.0, "c")
    assert 0.15 < wait_c <= 0.2
    assert broker.acquire_rate("t", 10.0, "b") == 0  # b comes back: its slot is kept
    assert broker.acquire_rate("other", 10.0, "d") == 0  # limits are per name
    time.sleep(0.35)
    assert broker.acquire_rate("t", 10.0, "e") == 0


def test_run_time_rate_limits_are_stored(make_broker: MakeBroker) -> None:
    one, two = make_broker(), make_broker()
    one.set_rate_limit("tasks.a", "5/s")
    one.set_rate_limit("tasks.b", "0")
    assert two.rate_limits() == {"tasks.a": "5/s", "tasks.b": "0"}
    two.set_rate_limit("tasks.a", None)
    assert one.rate_limits() == {"tasks.b": "0"}


def test_slots_are_held_by_live_deliveries_only(broker: Broker) -> None:
    broker.publish("q", [b"1", b"2", b"3"])
    consumer = broker.consumer(["q"], "c1", 10)
    first, second, third = consumer.fetch(3, timeout=1)
    assert broker.acquire_slot("k", 2, "c1", first.tag)
    assert broker.acquire_slot("k", 2, "c1", first.tag)  # already held: still one slot
    assert broker.acquire_slot("k", 2, "c1", second.tag)
    assert not broker.acquire_slot("k", 2, "c1", third.tag)
    broker.release_slot("k", "c1", second.tag)
    assert broker.acquire_slot("k", 2, "c1", third.tag)
    assert broker.acquire_slot("other", 1, "c1", second.tag)  # keys are separate
    # An acked delivery holds nothing, even if its release was lost.
    consumer.ack(first)
    consumer.flush()
    assert broker.acquire_slot("k", 2, "c1", second.tag)
    consumer.close()


def test_a_dead_consumer_holds_no_slot(broker: Broker) -> None:
    broker.publish("q", [b"1", b"2"])
    dead = broker.consumer(["q"], "dead", 10)
    (message,) = dead.fetch(1, timeout=1)
    assert broker.acquire_slot("k", 1, "dead", message.tag)
    assert broker.acquire_slot("k", 2, "dead", "")  # an early-acked task: the consumer's
    live = broker.consumer(["q"], "live", 10)
    (other,) = live.fetch(1, timeout=1)
    assert not broker.acquire_slot("k", 2, "live", other.tag)
    broker.reclaim("dead")  # its process is gone
    assert broker.acquire_slot("k", 2, "live", other.tag)
    dead.close()
    live.close()


def test_a_deferred_message_comes_back_when_due_without_counting_a_delivery(
    broker: Broker,
) -> None:
    broker.publish("q", [b"body"], priority=3)
    consumer = broker.consumer(["q"], "c1", 10)
    (delivery,) = consumer.fetch(1, timeout=1)
    deferred_at = time.monotonic()
    broker.defer("c1", delivery, 0.3)
    (stats,) = [s for s in broker.queues() if s.name == "q"]
    assert (stats.ready, stats.scheduled) == (0, 1)
    (again,) = consumer.fetch(1, timeout=2)
    assert time.monotonic() - deferred_at >= 0.28
    assert (again.body, again.priority, again.deliveries) == (b"body", 3, 1)
    consumer.close()


def _ready(broker: Broker, queue: str) -> int:
    return sum(s.ready for s in broker.queues() if s.name == queue)
