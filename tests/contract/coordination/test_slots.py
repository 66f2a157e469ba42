"""The concurrency-slot contract: a slot is held by a live delivery only, so a dead worker
or a lost release never leaks one.
"""

from __future__ import annotations

import time

from conveyor.stores import coordinator_for
from conveyor.stores.transport import Transport

from ..conftest import MakeCoordinator
from ..transport.helpers import leased


def test_slots_are_held_by_live_deliveries_only(transport: Transport) -> None:
    coordinator = coordinator_for(transport)  # beside: it sees the transport's leases
    transport.publish("q", [b"1", b"2", b"3"])
    consumer = transport.consumer(["q"], "c1", 10)
    first, second, third = consumer.fetch(3, timeout=1)
    assert coordinator.acquire_slot("k", 2, "c1", first.tag)
    assert coordinator.acquire_slot("k", 2, "c1", first.tag)  # already held: still one slot
    assert coordinator.acquire_slot("k", 2, "c1", second.tag)
    assert not coordinator.acquire_slot("k", 2, "c1", third.tag)
    coordinator.release_slot("k", "c1", second.tag)
    assert coordinator.acquire_slot("k", 2, "c1", third.tag)
    assert coordinator.acquire_slot("other", 1, "c1", second.tag)  # keys are separate
    # An acked delivery holds nothing, even if its release was lost.
    consumer.ack(first)
    consumer.flush()
    assert coordinator.acquire_slot("k", 2, "c1", second.tag)
    consumer.close()


def test_a_dead_consumer_holds_no_slot(transport: Transport) -> None:
    coordinator = coordinator_for(transport)  # beside: it sees the transport's leases
    transport.publish("q", [b"1", b"2"])
    dead = transport.consumer(["q"], "dead", 10)
    (message,) = dead.fetch(1, timeout=1)
    assert coordinator.acquire_slot("k", 1, "dead", message.tag)
    assert coordinator.acquire_slot("k", 2, "dead", "")  # an early-acked task: the consumer's
    live = transport.consumer(["q"], "live", 10)
    (other,) = live.fetch(1, timeout=1)
    assert not coordinator.acquire_slot("k", 2, "live", other.tag)
    leased(transport).reclaim("dead")  # its process is gone
    assert coordinator.acquire_slot("k", 2, "live", other.tag)
    dead.close()
    live.close()


def test_apart_slots_are_held_while_their_consumer_renews(
    make_apart_coordinator: MakeCoordinator,
) -> None:
    """A coordinator apart from the transport cannot see its deliveries: a slot lives as
    long as its consumer's lease there, which the keeper renews (``renew_holders``)."""
    coordinator = make_apart_coordinator()
    coordinator.renew_holders(["c1", "c2"], 0.3)
    assert coordinator.acquire_slot("k", 1, "c1", "7")
    assert coordinator.acquire_slot("k", 1, "c1", "7")  # already held: still one slot
    assert not coordinator.acquire_slot("k", 1, "c2", "9")
    coordinator.renew_holders(["c2"], 10)
    time.sleep(0.4)  # c1 stopped renewing: its worker is gone
    assert coordinator.acquire_slot("k", 1, "c2", "9")
    assert not coordinator.acquire_slot("k", 1, "c3", "1")
    coordinator.release_slot("k", "c2", "9")
    assert coordinator.acquire_slot("k", 1, "c3", "1")
