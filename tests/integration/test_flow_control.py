"""Promise 4 and issue 6 with real workers, on Redis and on SQLite: a rate limit holds
across all workers together, a concurrency limit per key is never exceeded and leaks no
slot when a worker is SIGKILLed, and a duplicate idempotency key runs once."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ..apps import flow as flow_module
from ..apps.flow import read_log
from ..support import connected, wait_for

APP = "tests.apps.flow"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["redis", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return redis_url
    return f"sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def record_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "records"
    directory.mkdir()
    monkeypatch.setenv("FLOW_RECORD_DIR", str(directory))
    return directory


@pytest.fixture
def flow(url: str) -> Iterator[ModuleType]:
    with connected(flow_module.app, url):
        yield flow_module


def start_workers(
    spawn_worker: Any, url: str, record_dir: Path, count: int, concurrency: int, **env: str
) -> list[Any]:
    environment = {"FLOW_RECORD_DIR": str(record_dir), **env}
    workers = [
        spawn_worker(APP, url, "-c", str(concurrency), env=environment, wait=False)
        for _ in range(count)
    ]
    for worker in workers:
        worker.wait_ready()
    return workers


@pytest.mark.chaos
def test_a_rate_limit_holds_across_all_workers_together(
    flow: ModuleType, url: str, record_dir: Path, spawn_worker: Any
) -> None:
    start_workers(spawn_worker, url, record_dir, count=2, concurrency=2)  # 4 processes
    flow.limited.delay_many([(i,) for i in range(200)])
    wait_for(lambda: read_log(record_dir, "limited"), 10, what="the first limited task")
    first = min(float(line.split()[0]) for line in read_log(record_dir, "limited"))
    time.sleep(max(0.0, first + 5.5 - time.time()))
    runs = [line.split() for line in read_log(record_dir, "limited")]
    in_window = [pid for at, pid in runs if first <= float(at) < first + 5.0]
    assert 95 <= len(in_window) <= 105, f"{len(in_window)} ran in 5 s at 20/s"
    assert len(set(in_window)) >= 3, "the limit is shared: every process ran some"


def test_a_concurrency_limit_per_key_is_never_exceeded(
    flow: ModuleType, url: str, record_dir: Path, spawn_worker: Any
) -> None:
    start_workers(spawn_worker, url, record_dir, count=2, concurrency=3)  # 6 processes
    results = [flow.per_customer.delay(c, 0.3) for _ in range(6) for c in "abc"]
    for result in results:
        result.get(timeout=30)
    for customer in "abc":
        seen = [int(n) for n in read_log(record_dir, f"running-{customer}")]
        assert len(seen) == 6
        assert max(seen) == 2, f"customer {customer}: {seen} ran at once"


@pytest.mark.chaos
def test_a_sigkilled_worker_leaks_no_concurrency_slot(
    flow: ModuleType, url: str, record_dir: Path, spawn_worker: Any
) -> None:
    (first,) = start_workers(spawn_worker, url, record_dir, 1, 1, FLOW_LEASE_SECONDS="2")
    held = flow.hold.delay("x", 60)  # holds customer x's only slot for a minute
    wait_for(lambda: read_log(record_dir, "hold-x"), 10, what="the slot to be taken")
    first.kill_group(signal.SIGKILL)
    killed = time.monotonic()
    start_workers(spawn_worker, url, record_dir, 1, 2, FLOW_LEASE_SECONDS="2")
    after = flow.hold.delay("x", 0)
    assert after.get(timeout=20) == "done"
    assert held.get(timeout=20) == "done"  # run again elsewhere, as promise 1 says
    assert time.monotonic() - killed < 12, "the dead worker's slot came back within its lease"


def test_a_duplicate_idempotency_key_within_the_window_runs_once(
    flow: ModuleType, url: str, record_dir: Path, spawn_worker: Any
) -> None:
    start_workers(spawn_worker, url, record_dir, count=1, concurrency=2)
    first = flow.charge.apply_async(("c-1",), idempotency_key="charge-123")
    again = flow.charge.apply_async(("c-1",), idempotency_key="charge-123")
    assert again.id == first.id
    assert first.get(timeout=10) == "c-1"
    later = flow.charge.apply_async(("c-1",), idempotency_key="charge-123")  # ran already
    assert later.id == first.id and later.get(timeout=5) == "c-1"
    other = flow.charge.apply_async(("c-2",), idempotency_key="charge-456")
    shipped = flow.ship.delay(7)  # the task derives its key from order_id
    assert flow.ship.delay(7, express=True).id == shipped.id != flow.ship.delay(8).id
    assert other.get(timeout=10) == "c-2" and shipped.get(timeout=10) == 7
    time.sleep(0.5)  # time for a duplicate, had one been sent, to run
    assert sorted(read_log(record_dir, "charges")) == ["c-1", "c-2"]
    assert sorted(read_log(record_dir, "shipments")) == ["7", "8"]


def test_run_time_rate_limit_reaches_running_workers(
    flow: ModuleType, url: str, record_dir: Path, spawn_worker: Any
) -> None:
    start_workers(spawn_worker, url, record_dir, count=1, concurrency=2)
    flow.app.control.rate_limit("tests.apps.flow.charge", "2/s")
    time.sleep(1.2)  # workers re-read run-time limits every second
    started = time.monotonic()
    results = [flow.charge.delay(f"r-{i}") for i in range(5)]
    for result in results:
        result.get(timeout=10)
    took = time.monotonic() - started
    assert 1.8 <= took < 4, f"5 tasks at 2/s took {took:.2f}s"
    flow.app.control.rate_limit("tests.apps.flow.charge", None)
