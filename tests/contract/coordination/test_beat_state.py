"""Beat's coordination: the leader lease and the schedule state, on every coordinator."""

from __future__ import annotations

import time

from conveyor.stores.coordination import Coordinator

from ..conftest import MakeCoordinator


def test_a_lease_has_one_owner_until_it_expires_or_is_dropped(coordinator: Coordinator) -> None:
    assert coordinator.hold_lease("beat", "a", 0.5)
    assert not coordinator.hold_lease("beat", "b", 0.5)
    assert coordinator.hold_lease("beat", "a", 0.5)  # the owner renews
    coordinator.drop_lease("beat", "b")  # not b's to drop
    assert coordinator.lease_owner("beat") == "a"
    time.sleep(0.6)
    assert coordinator.hold_lease("beat", "b", 5)
    assert coordinator.lease_owner("beat") == "b"
    coordinator.drop_lease("beat", "b")
    assert coordinator.lease_owner("beat") is None
    assert coordinator.hold_lease("beat", "a", 5)


def test_schedule_state_is_shared(make_coordinator: MakeCoordinator) -> None:
    one, two = make_coordinator(), make_coordinator()
    assert one.schedule_state(["a", "b"]) == {}
    one.record_schedule_state({"a": 1700000000.25, "b": 5.0})
    one.record_schedule_state({"b": 6.5})
    assert two.schedule_state(["a", "b", "c"]) == {"a": 1700000000.25, "b": 6.5}
