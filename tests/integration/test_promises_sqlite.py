"""Promises 3 (ETA held in the broker), 5 (bad input) and 8 (no starvation) on the
embedded SQLite broker, with real workers (the Redis versions are in test_bad_input.py
and test_scheduling.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conveyor import states
from conveyor.exceptions import MessageError
from conveyor.message import Envelope, encode_envelope

from ..apps import basic as basic_module
from ..support import connected, rss_kib, wait_for


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def basic_sqlite(sqlite_url: str) -> Iterator[ModuleType]:
    with connected(basic_module.app, sqlite_url):
        yield basic_module


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe garbage", b'{"no": "envelope"}', b"", b"\x00pickle\x00cos\nsystem\n."],
    ids=["binary", "not-envelope", "empty", "pickle"],
)
def test_garbage_is_dead_lettered_and_the_worker_goes_on(
    body: bytes, basic_sqlite: ModuleType, sqlite_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker("tests.apps.basic", sqlite_url, "-c", "1")
    broker = basic_sqlite.app.broker
    broker.publish("celery", [body])
    dlq = basic_sqlite.app.coordinator
    wait_for(lambda: len(dlq.dead_letters()) == 1, 10, what="the dead letter")
    (letter,) = dlq.dead_letters()
    assert letter.body == body and letter.reason
    assert basic_sqlite.add.delay(20, 22).get(timeout=10) == 42
    assert worker.process.poll() is None


def test_unknown_task_is_dead_lettered(
    basic_sqlite: ModuleType, sqlite_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.basic", sqlite_url, "-c", "1")
    result = basic_sqlite.app.send_task("nope")
    with pytest.raises(MessageError, match="unknown task name"):
        result.get(timeout=10)
    assert result.state == states.REJECTED
    assert basic_sqlite.add.delay(1, 1).get(timeout=10) == 2


def test_one_slow_task_does_not_hold_quick_ones_hostage(
    basic_sqlite: ModuleType, sqlite_url: str, spawn_worker: Any
) -> None:
    slow = basic_sqlite.sleep_for.delay(10)
    quick = basic_sqlite.add.delay_many([(i, 0) for i in range(100)])
    spawn_worker("tests.apps.basic", sqlite_url, "-c", "2")
    assert [r.get(timeout=8) for r in quick] == list(range(100))
    assert not slow.ready()


def test_countdown_tasks_wait_in_the_database_not_in_worker_memory(
    basic_sqlite: ModuleType, sqlite_url: str, spawn_worker: Any
) -> None:
    """Promise 3: 100,000 tasks due in an hour cost the workers nothing, and a
    countdown=1 task starts within 1.1 s."""
    worker = spawn_worker("tests.apps.basic", sqlite_url, "-c", "2")
    pids = [worker.pid, *worker.children()]

    def settle() -> None:
        for res in basic_sqlite.add.delay_many([(i, i) for i in range(300)]):
            res.get(timeout=10)

    settle()
    before = rss_kib(pids)
    broker = basic_sqlite.app.broker
    body = encode_envelope(Envelope(id="later", task="tests.apps.basic.add", args=[1, 1]))
    for _ in range(10):
        broker.publish("celery", [body] * 10_000, countdown=3600)
    settle()
    assert rss_kib(pids) - before < 3 * 1024
    (stats,) = broker.queues()
    assert (stats.ready, stats.scheduled) == (0, 100_000)

    sent = time.time()
    soon = basic_sqlite.add.apply_async((2, 3), countdown=1)
    assert soon.get(timeout=5) == 5
    assert soon.date_done is not None
    done = soon.date_done.timestamp()  # a datetime, as Celery's
    assert 1.0 <= done - sent <= 1.1, f"started after {done - sent:.3f}s"
