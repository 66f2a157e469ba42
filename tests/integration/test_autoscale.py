"""``--autoscale=MAX,MIN`` with real workers: a backlog grows the pool to MAX, idleness
(past AUTOSCALE_KEEPALIVE) shrinks it back to MIN; pool_grow moves the bounds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from ..apps import green
from ..support import connected, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def tasks(redis_url: str) -> Iterator[ModuleType]:
    with connected(green.app, redis_url):
        yield green


def _pool(tasks: ModuleType, name: str) -> dict[str, Any]:
    stats = tasks.app.control.inspect(timeout=1.0).stats() or {}
    pool: dict[str, Any] = stats.get(name, {}).get("pool", {})
    return pool


def _size(tasks: ModuleType, name: str) -> int:
    return int(_pool(tasks, name).get("max-concurrency", -1))


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_backlog_grows_the_pool_to_max_and_idleness_shrinks_it_to_min(
    tasks: ModuleType, redis_url: str, spawn_worker: Any, pool: str
) -> None:
    name = f"auto-{pool}@{socket.gethostname()}"
    spawn_worker(
        "tests.apps.green", redis_url, "-P", pool, "--autoscale=4,1", "-n", name,
        "--prefetch-multiplier", "1", env={"AUTOSCALE_KEEPALIVE": "1"},
    )
    assert _size(tasks, name) == 1
    assert _pool(tasks, name)["autoscaler"] == {"max": 4, "min": 1, "qty": 1}

    results = [tasks.nap.delay(1.0) for _ in range(12)]
    wait_for(lambda: _size(tasks, name) == 4, 15, what="the pool to grow to 4")
    assert [r.get(timeout=30) for r in results] == [r.id for r in results]
    wait_for(lambda: _size(tasks, name) == 1, 15, what="the pool to shrink back to 1")
    if pool == "prefork":
        wait_for(
            lambda: len(_pool(tasks, name)["processes"]) == 1, 15, what="one child process left"
        )

    # pool_grow past MAX raises MAX (as Celery's autoscaler does), so the next tick does
    # not undo it; idle again, the pool goes back to MIN after the keepalive.
    assert tasks.app.control.pool_grow(4, reply=True, destination=[name]) == [
        {name: {"ok": "pool will grow by 4"}}
    ]
    assert _pool(tasks, name)["autoscaler"]["max"] == 5
    wait_for(lambda: _size(tasks, name) == 1, 15, what="the pool to shrink back to 1 again")
