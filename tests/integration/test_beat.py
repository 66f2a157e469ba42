"""Promise 7 with real beat processes, on Redis and on SQLite: several beats fire each
tick once, a SIGKILLed leader is replaced within its lease, and ``worker -B`` runs beat
in a child process of the worker. (Daylight-saving changes are driven with a clock in
tests/unit/test_beat.py, without waiting.)"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.message import Envelope, decode_envelope

from ..apps import beat as beat_module
from ..support import TESTS_ROOT, WorkerProcess, connected, process_gone, wait_for

APP = "tests.apps.beat"

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(params=["redis", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return redis_url
    return f"sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def app(url: str) -> Iterator[Conveyor]:
    with connected(beat_module.app, url) as app:
        yield app


@pytest.fixture
def spawn_beat(tmp_path: Path) -> Iterator[Any]:
    """Start ``conveyor -A tests.apps.beat beat`` processes; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def spawn(url: str, lease: float = 10.0) -> WorkerProcess:
        env = dict(os.environ)
        env["CONVEYOR_BROKER_URL"] = url
        env["BEAT_LEASE_SECONDS"] = str(lease)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS_ROOT.parent), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "conveyor", "-A", APP, "beat", "-l", "info"]
        beat = WorkerProcess(command, env, tmp_path / f"beat-{len(started)}.log")
        started.append(beat)
        beat.start()
        return beat

    yield spawn
    for beat in started:
        beat.stop()


def wait_started(beats: list[WorkerProcess]) -> None:
    for beat in beats:
        wait_for(lambda beat=beat: "beat: starting" in beat.output(), 20, what="beat to start")


def drain(app: Conveyor) -> list[Envelope]:
    """Every message beat sent to the queue so far (taken off it)."""
    consumer = app.broker.consumer([beat_module.QUEUE], "test-reader", 30)
    out = []
    try:
        while batch := consumer.fetch(500, timeout=0):
            for delivery in batch:
                out.append(decode_envelope(delivery.body, frozenset({"json"})))
                consumer.ack(delivery)
        consumer.flush()
    finally:
        consumer.close()
    return out


def ticks(envelopes: list[Envelope]) -> list[float]:
    every_second = (e for e in envelopes if e.headers["periodic_task_name"] == "every second")
    return sorted(e.headers["beat_due"] for e in every_second)


def leader_pid(app: Conveyor) -> int | None:
    owner = app.coordinator.lease_owner("beat")
    return int(owner.split(":")[1]) if owner else None


@pytest.mark.chaos
def test_three_beats_for_20_seconds_fire_each_tick_once(
    app: Conveyor, url: str, spawn_beat: Any
) -> None:
    beats = [spawn_beat(url) for _ in range(3)]
    wait_started(beats)
    wait_for(lambda: leader_pid(app) is not None, 10, what="a leader")
    time.sleep(21.5)
    for beat in beats:
        beat.send_signal(signal.SIGTERM)
    for beat in beats:
        assert beat.wait(10) == 0
    sent = drain(app)
    due = ticks(sent)
    assert len(due) == len(set(due)), "a tick was sent twice"
    first = due[0]
    fired = [t for t in due if first <= t < first + 20]
    assert 19 <= len(fired) <= 21, f"{len(fired)} ticks in 20 s (3 beats would send 60)"
    assert len({e.id for e in sent}) == len(sent)
    leaders = [b for b in beats if " leads " in b.output()]
    assert len(leaders) == 1, "exactly one beat led for the whole run"


@pytest.mark.chaos
def test_killing_the_leader_hands_over_within_the_lease(
    app: Conveyor, url: str, spawn_beat: Any
) -> None:
    lease = 3.0
    beats = [spawn_beat(url, lease=lease) for _ in range(2)]
    wait_started(beats)
    wait_for(lambda: leader_pid(app) is not None, 10, what="a leader")
    seen: list[Envelope] = []

    def count() -> int:
        seen.extend(drain(app))
        return len(ticks(seen))

    wait_for(lambda: count() >= 2, 10, what="two ticks")
    leader = next(b for b in beats if b.pid == leader_pid(app))
    os.kill(leader.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: leader_pid(app) not in (None, leader.pid), lease + 3, what="a new leader")
    handover = time.monotonic() - killed
    assert handover <= lease + 1.5, f"took {handover:.1f}s with a {lease}s lease"
    time.sleep(2.5)
    count()
    due = ticks(seen)
    assert len(due) == len(set(due))
    gaps = [b - a for a, b in itertools.pairwise(due)]
    # The ticks missed while nobody led are sent once (one longer gap), then every second.
    assert max(gaps) <= lease + 2
    assert sum(1 for g in gaps if g > 1.5) == 1
    assert gaps[-1] == pytest.approx(1.0)


def test_worker_with_beat_runs_periodic_tasks_in_a_child_process(
    url: str, tmp_path: Path, spawn_worker: Any
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    env = {"BEAT_RECORD_DIR": str(records), "BEAT_LEASE_SECONDS": "3"}
    worker = spawn_worker(APP, url, "-c", "1", "-Q", "beat", "-B", env=env)
    children = worker.children()
    assert len(children) == 2, "one pool child and the beat child"
    log = records / "ticks.log"
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, 10,
             what="three ticks run by the worker")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert all(process_gone(pid) for pid in children)
