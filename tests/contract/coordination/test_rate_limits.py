"""The rate-limiter contract: one GCRA per task name shared by all workers, and run-time
limits, on every coordinator.
"""

from __future__ import annotations

import time

from conveyor.stores.coordination import Coordinator

from ..conftest import MakeCoordinator


def test_the_rate_limiter_reserves_the_next_slot(coordinator: Coordinator) -> None:
    assert coordinator.acquire_rate("t", 10.0, "a") == 0
    wait_b = coordinator.acquire_rate("t", 10.0, "b")
    assert 0.05 < wait_b <= 0.1
    wait_c = coordinator.acquire_rate("t", 10.0, "c")
    assert 0.15 < wait_c <= 0.2
    assert coordinator.acquire_rate("t", 10.0, "b") == 0  # b comes back: its slot is kept
    assert coordinator.acquire_rate("other", 10.0, "d") == 0  # limits are per name
    time.sleep(0.35)
    assert coordinator.acquire_rate("t", 10.0, "e") == 0


def test_run_time_rate_limits_are_stored(make_coordinator: MakeCoordinator) -> None:
    one, two = make_coordinator(), make_coordinator()
    one.set_rate_limit("tasks.a", "5/s")
    one.set_rate_limit("tasks.b", "0")
    assert two.rate_limits() == {"tasks.a": "5/s", "tasks.b": "0"}
    two.set_rate_limit("tasks.a", None)
    assert one.rate_limits() == {"tasks.b": "0"}
