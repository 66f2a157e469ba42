"""The result backend contract: every backend (redis, sqlite, memory) passes these."""

from __future__ import annotations

import threading
import time

from conveyor.stores.results import ResultBackend

from ..conftest import MakeBackend

FINAL = b'{"task_id":"t","status":"SUCCESS","result":3}'
STARTED = b'{"task_id":"t","status":"STARTED"}'


def test_unknown_task_has_no_record(backend: ResultBackend) -> None:
    assert backend.get("nobody") is None
    assert backend.wait("nobody", 0.05) is None


def test_store_get_wait(backend: ResultBackend) -> None:
    backend.store("t", STARTED, False)
    assert backend.get("t") == STARTED
    assert backend.wait("t", 0.05) is None  # an interim state is not an outcome
    backend.store("t", FINAL, True)
    assert backend.get("t") == FINAL
    assert backend.wait("t", 1.0) == FINAL
    assert backend.wait("t", None) == FINAL


def test_an_interim_state_never_replaces_a_final_one(backend: ResultBackend) -> None:
    backend.store("t", FINAL, True)
    backend.store("t", STARTED, False)
    assert backend.get("t") == FINAL
    backend.store("t", b"again", True)  # a final one replaces a final one
    assert backend.get("t") == b"again"


def test_get_many_answers_like_get_in_order(backend: ResultBackend) -> None:
    backend.store("t", FINAL, True)
    backend.store("u", STARTED, False)
    assert backend.get_many(["u", "nobody", "t"]) == [STARTED, None, FINAL]
    assert backend.get_many([]) == []


def test_forget(backend: ResultBackend) -> None:
    backend.store("t", FINAL, True)
    backend.forget("t")
    assert backend.get("t") is None
    assert backend.wait("t", 0.05) is None


def test_results_expire(make_backend: MakeBackend) -> None:
    backend = make_backend(expires=0.3)
    backend.store("t", FINAL, True)
    backend.store("u", STARTED, False)
    assert backend.get("t") == FINAL
    time.sleep(0.45)
    assert backend.get("t") is None
    assert backend.get("u") is None
    assert backend.wait("t", 0.05) is None
    backend.store("v", FINAL, True)  # a store after expiry works as usual
    assert backend.get("v") == FINAL


def test_wait_times_out(backend: ResultBackend) -> None:
    started = time.monotonic()
    assert backend.wait("t", 0.3) is None
    assert 0.28 <= time.monotonic() - started < 0.7


def test_wait_wakes_promptly_when_another_thread_stores(make_backend: MakeBackend) -> None:
    waiter, writer = make_backend(), make_backend()
    timer = threading.Timer(0.2, lambda: writer.store("t", FINAL, True))
    started = time.monotonic()
    timer.start()
    assert waiter.wait("t", 5.0) == FINAL
    took = time.monotonic() - started
    timer.join()
    assert took < 0.3, f"woke {took - 0.2:.3f}s after the store"


def test_every_waiter_wakes(make_backend: MakeBackend) -> None:
    backend = make_backend()
    results: list[bytes | None] = []
    lock = threading.Lock()

    def wait() -> None:
        value = make_backend().wait("t", 5.0)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=wait) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    backend.store("t", STARTED, False)  # an interim state wakes nobody for good
    time.sleep(0.1)
    assert results == []
    backend.store("t", FINAL, True)
    for t in threads:
        t.join(5)
    assert results == [FINAL] * 4
