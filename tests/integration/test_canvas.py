"""Workflows with real workers (issue 5), on Redis and on SQLite: chains, groups and
chords, nested, with their errors; and the chord body exactly once under a SIGKILL.

The tests but the chaos one share one worker per broker (started once per module), and
tell their records apart by a key of their own.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from conveyor import GroupResult, chain, chord, group, states
from conveyor.exceptions import ChordError, TimeLimitExceeded

from ..apps import canvas
from ..apps.canvas import read_log
from ..support import RedisServer, WorkerProcess, connected, wait_for

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.canvas"
TESTS = Path(__file__).parent.parent


@dataclass
class Cluster:
    kind: str
    url: str
    records: Path

    def log(self, key: str) -> list[str]:
        return read_log(self.records, key)


def start_worker(url: str, records: Path, log: Path, *args: str, **env: str) -> WorkerProcess:
    environment = dict(os.environ)
    environment.update(
        CONVEYOR_BROKER_URL=url,
        CANVAS_RECORD_DIR=str(records),
        PYTHONPATH=os.pathsep.join([str(TESTS.parent), environment.get("PYTHONPATH", "")]),
        **env,
    )
    command = [sys.executable, "-m", "conveyor", "-A", APP, "worker", "-l", "info", *args]
    worker = WorkerProcess(command, environment, log)
    worker.start()
    worker.wait_ready()
    return worker


def broker_url(kind: str, directory: Path, request: pytest.FixtureRequest, db: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{directory / 'conveyor.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    server.ensure_running()
    url = f"redis://127.0.0.1:{server.port}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A worker (prefork, 2 processes) on a broker of this module's own."""
    kind: str = request.param
    directory = tmp_path_factory.mktemp(f"canvas-{kind}")
    url = broker_url(kind, directory, request, db=5)
    records = directory / "records"
    records.mkdir()
    worker = start_worker(url, records, directory / "worker.log", "-c", "2")
    try:
        with connected(canvas.app, url):
            yield Cluster(kind, url, records)
    finally:
        worker.stop()


def key() -> str:
    return uuid.uuid4().hex[:12]


# chains ----------------------------------------------------------------------------------
def test_payment_receipt_inventory_chain(cluster: Cluster) -> None:
    flow = chain(
        canvas.process_payment.s(order_id=123),
        canvas.send_receipt.s(),
        canvas.update_inventory.s(),
    )
    result = flow()
    assert result.get(timeout=20) == {
        "order_id": 123, "paid": 100, "receipt": "R-123", "stock": "reserved"
    }  # fmt: skip
    receipt = result.parent
    assert receipt is not None and receipt.parent is not None
    payment = receipt.parent
    assert payment.parent is None
    # What a dashboard draws from: every message knows its root and its parent ...
    lines = [line.split() for line in cluster.log("shop") if line.split()[1] == "123"]
    steps = {step: (task_id, root, parent) for step, _, task_id, root, parent in lines}
    assert steps["payment"] == (payment.id, payment.id, "None")
    assert steps["receipt"] == (receipt.id, payment.id, payment.id)
    assert steps["inventory"] == (result.id, payment.id, receipt.id)
    # ... and every stored result its parent and children.
    assert [c.id for c in payment.children] == [receipt.id]
    assert [c.id for c in receipt.children] == [result.id]
    fresh = canvas.app.AsyncResult(result.id)
    assert fresh.parent is not None and fresh.parent.id == receipt.id


def test_a_failing_step_stops_the_chain_and_fails_its_result(cluster: Cluster) -> None:
    k = key()
    flow = chain(
        canvas.process_payment.s(order_id=7, amount=0),  # declined
        canvas.send_receipt.s(),
        canvas.record.s(key=k),
    ).on_error(canvas.on_error_by_id.s(key=k))
    result = flow()
    with pytest.raises(canvas.PaymentDeclined, match="order 7"):
        result.get(timeout=20)
    assert result.state == states.FAILURE
    assert result.parent is not None and result.parent.state == states.FAILURE
    payment = result.parent.parent
    assert payment is not None
    wait_for(lambda: cluster.log(k), 10, what="the errback")
    time.sleep(0.3)  # it would have run twice by now
    assert cluster.log(k) == [f"errback-id {payment.id}"]  # once; the rest never ran


def test_link_and_link_error_on_apply_async(cluster: Cluster) -> None:
    k = key()
    assert canvas.add.apply_async((2, 3), link=canvas.record.s(key=k)).get(timeout=20) == 5
    wait_for(lambda: cluster.log(k), 10, what="the callback")
    assert cluster.log(k) == ["ran 5"]

    errbacks = [canvas.on_error_by_id.s(key=k), canvas.on_error_with_request.s(key=k)]
    failing = canvas.fail_after_retries.apply_async((k,), link_error=errbacks)
    with pytest.raises(ValueError, match="gave up"):
        failing.get(timeout=20)
    wait_for(lambda: len(cluster.log(k)) >= 6, 10, what="both errbacks")
    time.sleep(0.3)
    assert sorted(cluster.log(k)[1:]) == [
        "attempt 0", "attempt 1", "attempt 2",
        f"errback-id {failing.id}",
        f"errback-request {failing.id} ValueError",
    ]  # fmt: skip


# groups and chords -----------------------------------------------------------------------
def test_a_group_of_10000_tasks(cluster: Cluster) -> None:
    result = group(canvas.add.s(i, i) for i in range(10_000))()
    assert isinstance(result, GroupResult) and len(result) == 10_000
    assert result.get(timeout=60) == [2 * i for i in range(10_000)]
    assert result.ready() and result.successful()
    assert result.completed_count() == 10_000


def test_a_chord_of_1000_runs_its_body_once(cluster: Cluster) -> None:
    k = key()
    result = chord(canvas.add.s(i, 1) for i in range(1000))(canvas.counted_sum.s(key=k))
    assert result.get(timeout=60) == sum(range(1, 1001))
    header = result.parent
    assert isinstance(header, GroupResult) and header.completed_count() == 1000
    time.sleep(0.3)
    (line,) = cluster.log(k)
    assert line.split()[1] == result.id and line.split()[3] == "1000"


def test_retried_header_tasks_count_once(cluster: Cluster) -> None:
    k = key()
    result = chord(canvas.retry_once.s(i) for i in range(20))(canvas.counted_sum.s(key=k))
    assert result.get(timeout=20) == sum(range(20))
    time.sleep(0.3)
    assert len(cluster.log(k)) == 1


def test_a_failing_header_task_fails_the_chord_with_chord_error(cluster: Cluster) -> None:
    k = key()
    header = [canvas.add.s(1, 1), canvas.fail.si("card expired"), canvas.add.s(2, 2)]
    body = canvas.counted_sum.s(key=k).on_error(canvas.on_error_by_id.s(key=k))
    result = chord(header, body)()
    # As Celery's get() (follow_parents): the header task's own exception is raised ...
    with pytest.raises(ValueError, match="card expired"):
        result.get(timeout=20)
    # ... while the body's own record is the ChordError naming that task.
    error = result.get(timeout=20, propagate=False)
    assert isinstance(error, ChordError) and isinstance(result.result, ChordError)
    failed = result.parent[1]  # type: ignore[index]
    assert failed.id in str(error)
    assert "tests.apps.canvas.fail" in str(error)
    assert "ValueError(card expired)" in str(error)
    assert result.state == states.FAILURE
    wait_for(lambda: cluster.log(k), 10, what="the errback")
    time.sleep(0.3)
    assert cluster.log(k) == [f"errback-id {result.id}"]  # once, and the body never ran


def test_a_header_task_killed_at_its_time_limit_fails_the_chord(cluster: Cluster) -> None:
    """The supervisor kills the child; it must still count the task toward its chord
    (else the chord would wait forever) and fail a chain behind it."""
    result = chord([canvas.add.s(1, 1), canvas.overruns.si(30)], canvas.tsum.s())()
    with pytest.raises(TimeLimitExceeded):  # the header task's own error, as Celery's
        result.get(timeout=20)
    error = result.get(timeout=20, propagate=False)
    assert isinstance(error, ChordError) and "TimeLimitExceeded" in str(error)
    flow = chain(canvas.overruns.si(30), canvas.add.s(1))()
    with pytest.raises(TimeLimitExceeded):
        flow.get(timeout=20)


def test_nested_workflows(cluster: Cluster) -> None:
    add, mul, tsum = canvas.add, canvas.mul, canvas.tsum
    # A chain containing a group: the group's results go on together (a chord).
    assert chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(), mul.s(10))().get(20) == 70
    # A chain ending in a group.
    assert chain(add.s(1, 1), group(add.s(1), mul.s(3)))().get(20) == [3, 6]
    # A chord whose body is a chain, and one whose body is a group.
    assert chord([add.s(1, 1), add.s(2, 2)], tsum.s() | mul.s(10))().get(20) == 60
    assert chord([add.s(1, 1), add.s(2, 2)], group(tsum.s(), mul.si(2, 2)))().get(20) == [6, 4]
    # A group of chains, and a chord of chains.
    assert group(add.s(i, i) | mul.s(2) for i in range(4))().get(20) == [0, 4, 8, 12]
    assert chord((add.s(i, i) | mul.s(2) for i in range(4)), tsum.s())().get(20) == 24
    # A chord inside a chain, between two steps.
    flow = add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()) | mul.s(2)
    assert flow().get(20) == 14
    # map, starmap and chunks.
    assert tsum.map([[1, 2], [3]]).delay().get(20) == [3, 3]
    assert add.chunks([(i, i) for i in range(5)], 2)().get(20) == [[0, 2], [4, 6], [8]]


def test_group_result_revoke(cluster: Cluster) -> None:
    held = group(canvas.add.s(i, i).set(countdown=2) for i in range(3))()
    try:
        held.revoke()
    except NotImplementedError:
        pytest.skip(f"the {cluster.kind} broker has no revocation yet")
    assert held.get(timeout=20, propagate=False) and all(
        r.state == states.REVOKED for r in held.results
    )


# chaos -----------------------------------------------------------------------------------
@pytest.mark.chaos
@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_chord_body_runs_once_when_a_worker_is_killed_mid_chord(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = broker_url(kind, tmp_path, request, db=6)
    records = tmp_path / "records"
    records.mkdir()
    env = {"CANVAS_LEASE_SECONDS": "2"}  # the dead worker's tasks come back within 2 s
    with connected(canvas.app, url):
        first = start_worker(url, records, tmp_path / "first.log", "-c", "2", **env)
        try:
            k = key()
            header = (canvas.header_step.s(i, 0.004, k) for i in range(1000))
            result = chord(header)(canvas.counted_sum.s(key=k))
            wait_for(lambda: len(read_log(records, k)) >= 300, 30, what="300 header tasks")
            first.kill_group(signal.SIGKILL)
            first.wait(5)
        finally:
            first.stop()
        done = len(read_log(records, k))
        assert done < 1000, "the kill came too late to interrupt the chord"
        second = start_worker(url, records, tmp_path / "second.log", "-c", "2", **env)
        try:
            assert result.get(timeout=60) == sum(range(1000))
            time.sleep(0.5)  # a second body would have run by now
            bodies = [line for line in read_log(records, k) if line.startswith("body")]
            assert len(bodies) == 1, bodies
            finished = {line.split()[1] for line in read_log(records, k) if line.startswith("done")}
            assert finished == {str(i) for i in range(1000)}
        finally:
            second.stop()
