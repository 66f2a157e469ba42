"""The worker registry contract: live workers by heartbeat, on every coordinator."""

from __future__ import annotations

import time

from conveyor.stores.coordination import Coordinator


def test_workers_registry_with_ttl(coordinator: Coordinator) -> None:
    coordinator.announce_worker("w1@host", {"hostname": "w1@host", "pid": 1}, ttl=10)
    coordinator.announce_worker("w2@host", {"hostname": "w2@host", "pid": 2}, ttl=0.3)
    assert sorted(w["hostname"] for w in coordinator.workers()) == ["w1@host", "w2@host"]
    coordinator.announce_worker("w1@host", {"hostname": "w1@host", "pid": 3}, ttl=10)
    assert [w["pid"] for w in coordinator.workers() if w["hostname"] == "w1@host"] == [3]
    time.sleep(0.4)
    assert [w["hostname"] for w in coordinator.workers()] == ["w1@host"]  # w2's heartbeat lapsed
    coordinator.retire_worker("w1@host")
    assert coordinator.workers() == []
