"""The autoscaler's decisions (worker/autoscale.py) on a pool of counters; the real
workers are in tests/integration/test_autoscale.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.exceptions import ConfigurationError
from conveyor.worker.autoscale import Autoscaler, parse_autoscale


class Counted:
    """A pool that only counts: its size and how many are busy."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.running = 0

    @property
    def concurrency(self) -> int:
        return self.size

    def busy(self) -> int:
        return min(self.running, self.size)

    def grow(self, n: int) -> None:
        self.size += n

    def shrink(self, n: int) -> None:
        self.size -= n


def test_autoscale_is_read_as_max_then_min() -> None:
    assert parse_autoscale("10,3") == (10, 3)
    assert parse_autoscale("4") == (4, 1)
    for bad in ("", "a,b", "3,10", "1,2,3"):
        with pytest.raises(ConfigurationError, match="--autoscale"):
            parse_autoscale(bad)


def test_it_grows_by_what_waits_up_to_max_and_shrinks_to_min_after_the_keepalive() -> None:
    pool, waiting = Counted(1), [0]
    scaler = Autoscaler(pool, (4, 1), lambda: waiting[0], keepalive=30.0)
    pool.running, waiting[0] = 1, 2
    scaler.tick(now=100.0)
    assert pool.size == 3  # two more for the two waiting
    pool.running, waiting[0] = 3, 50
    scaler.tick(now=101.0)
    assert pool.size == 4  # capped at MAX
    pool.running, waiting[0] = 1, 0
    scaler.tick(now=120.0)
    assert pool.size == 4  # idle, but not for the keepalive yet
    scaler.tick(now=131.5)
    assert pool.size == 1  # down to what is busy, not below MIN
    pool.running = 0
    scaler.tick(now=200.0)
    assert pool.size == 1


def test_a_busy_pool_with_nothing_waiting_keeps_its_size() -> None:
    pool = Counted(2)
    pool.running = 2
    scaler = Autoscaler(pool, (4, 1), lambda: 0, keepalive=0.0)
    scaler.tick(now=10.0)
    assert pool.size == 2


def test_pool_grow_and_shrink_move_the_bounds() -> None:
    pool = Counted(2)
    scaler = Autoscaler(pool, (3, 2), lambda: 0, keepalive=30.0)
    scaler.force(3)
    assert (pool.size, scaler.max) == (5, 5)
    scaler.force(-4)
    assert (pool.size, scaler.min) == (1, 1)


@pytest.mark.parametrize("pool", ["solo", "asyncio", "gevent", "eventlet"])
def test_autoscale_is_refused_on_a_pool_that_cannot_grow_by_it(pool: str, tmp_path: Path) -> None:
    from conveyor import Conveyor
    from conveyor.worker.main import Worker

    app = Conveyor("autoscale-refused", broker=f"sqlite:///{tmp_path / 'broker.db'}")
    try:
        with pytest.raises(ConfigurationError, match=f"--autoscale needs .* \\(not {pool}\\)"):
            Worker(app, pool=pool, autoscale=(4, 1))
    finally:
        app.close()
