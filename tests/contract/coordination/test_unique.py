"""The unique-send contract: a key claimed by the first send drops the rest in its window,
whether the coordinator is beside the transport (one atomic step) or apart from it.
"""

from __future__ import annotations

import time

import pytest

from conveyor.stores.coordination import Coordinator
from conveyor.stores.transport import Transport


def test_a_unique_send_within_the_window_is_dropped(
    transport: Transport, coordinator: Coordinator
) -> None:
    assert (
        coordinator.publish_unique(transport, "q", b"first", key="k", task_id="id-1", ttl=0.5)
        is None
    )
    assert (
        coordinator.publish_unique(transport, "q", b"second", key="k", task_id="id-2", ttl=0.5)
        == "id-1"
    )
    assert (
        coordinator.publish_unique(transport, "q", b"other", key="k2", task_id="id-3", ttl=0.5)
        is None
    )
    assert _ready(transport, "q") == 2
    time.sleep(0.6)
    assert (
        coordinator.publish_unique(transport, "q", b"third", key="k", task_id="id-4", ttl=5) is None
    )
    assert _ready(transport, "q") == 3


def test_a_unique_send_can_wait_in_the_broker(
    transport: Transport, coordinator: Coordinator
) -> None:
    assert (
        coordinator.publish_unique(
            transport, "q", b"later", key="k", task_id="x", ttl=5, countdown=30
        )
        is None
    )
    (stats,) = [s for s in transport.queues() if s.name == "q"]
    assert (stats.ready, stats.scheduled) == (0, 1)


def _ready(transport: Transport, queue: str) -> int:
    return sum(s.ready for s in transport.queues() if s.name == queue)


def test_an_apart_claim_is_given_back_when_the_publish_fails(
    transport: Transport, coordinator: Coordinator
) -> None:
    with pytest.raises(ValueError):  # refused by the transport: nothing was sent
        coordinator.publish_unique(
            transport, "q", b"x", key="k", task_id="id-1", ttl=5, priority=99
        )
    assert coordinator.publish_unique(transport, "q", b"y", key="k", task_id="id-2", ttl=5) is None
    assert _ready(transport, "q") == 1


def test_a_claim_is_held_by_its_first_task_until_it_expires_or_is_dropped(
    coordinator: Coordinator,
) -> None:
    assert coordinator.claim_unique("k", "id-1", 0.3) is None
    assert coordinator.claim_unique("k", "id-2", 0.3) == "id-1"
    coordinator.drop_unique("k", "id-2")  # not id-2's to drop
    assert coordinator.claim_unique("k", "id-3", 0.3) == "id-1"
    coordinator.drop_unique("k", "id-1")
    assert coordinator.claim_unique("k", "id-3", 0.3) is None
    time.sleep(0.4)
    assert coordinator.claim_unique("k", "id-4", 5) is None
