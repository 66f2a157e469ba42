"""The async client's waiter for backends without an async client: one thread serves
every pending ``await result`` (stores/result_waiter.py), here on a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from conveyor.stores.aio import wait_async
from conveyor.stores.result_waiter import waiter_for
from conveyor.stores.results import ResultMeta, encode_meta
from conveyor.stores.sqlite.results import SQLiteBackend

pytestmark = pytest.mark.timeout(30)


def payload(status: str, value: int) -> bytes:
    return encode_meta(ResultMeta(status=status, result=value, task_id=f"t{value}"))


@pytest.fixture
def backend(tmp_path: Path) -> SQLiteBackend:
    return SQLiteBackend(f"sqlite:///{tmp_path / 'results.db'}")


def await_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "conveyor-await"]


def test_a_thousand_waits_are_served_by_one_thread(backend: SQLiteBackend) -> None:
    ids = [f"t{i}" for i in range(1000)]
    backend.store("t0", payload("SUCCESS", 0), True)  # in before the wait starts
    backend.store("t1", payload("STARTED", 1), False)  # interim: still waited for

    def store_the_rest() -> None:
        time.sleep(0.2)
        for i in range(1, 1000):
            backend.store(ids[i], payload("SUCCESS", i), True)

    async def main() -> tuple[list[bytes | None], int]:
        waits = asyncio.gather(*(wait_async(backend, task_id, 10) for task_id in ids))
        await asyncio.sleep(0.1)
        threads = len(await_threads())
        threading.Thread(target=store_the_rest).start()
        return await waits, threads

    found, threads = asyncio.run(main())
    assert threads == 1
    assert found == [payload("SUCCESS", i) for i in range(1000)]
    assert not waiter_for(backend)._pending


def test_a_wait_times_out_with_none_and_leaves_nothing_behind(backend: SQLiteBackend) -> None:
    async def main() -> tuple[bytes | None, float]:
        started = time.monotonic()
        found = await wait_async(backend, "never", 0.2)
        return found, time.monotonic() - started

    found, waited = asyncio.run(main())
    assert found is None
    assert 0.2 <= waited < 1.0
    assert not waiter_for(backend)._pending


def test_two_waits_for_one_task_both_get_it(backend: SQLiteBackend) -> None:
    async def main() -> list[bytes | None]:
        waits = asyncio.gather(wait_async(backend, "t7", 5), wait_async(backend, "t7", 5))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(backend.store, "t7", payload("FAILURE", 7), True)
        return list(await waits)

    assert asyncio.run(main()) == [payload("FAILURE", 7)] * 2


def test_a_store_that_fails_fails_the_waits(backend: SQLiteBackend) -> None:
    assert backend.get("t1") is None  # the schema is made on first use
    with sqlite3.connect(backend.db.path) as conn:
        conn.execute("DROP TABLE results")

    async def main() -> None:
        await wait_async(backend, "t1", 5)

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        asyncio.run(main())


def test_a_forked_child_waits_with_a_thread_of_its_own(backend: SQLiteBackend) -> None:
    """The parent's waiter thread is running when it forks; the child's wait must not
    be filed with that waiter (its thread did not cross the fork)."""

    async def wait_for_the_parent() -> bytes | None:
        waiting = asyncio.ensure_future(wait_async(backend, "t2", 5))
        await asyncio.sleep(0.05)  # the waiter's thread is up
        pid = os.fork()
        if pid == 0:  # the child: a result stored before it waits
            code = 1
            try:
                backend.store("t3", payload("SUCCESS", 3), True)
                found = asyncio.run(wait_async(backend, "t3", 2))
                code = 0 if found == payload("SUCCESS", 3) else 2
            finally:
                os._exit(code)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        await asyncio.to_thread(backend.store, "t2", payload("SUCCESS", 2), True)
        return await waiting

    assert asyncio.run(wait_for_the_parent()) == payload("SUCCESS", 2)
