"""The chord contract (issue 5): every result backend joins a chord atomically.

Each header task's result is stored and counted in one step, once per task id however
often it is stored, and exactly one step completes the chord. When the broker lives in
the backend's store (redis with redis, sqlite with sqlite), that step also queues the
body on the broker; otherwise it hands the body back to the caller, once.
"""

from __future__ import annotations

import threading

import pytest

from conveyor.stores.results import ChordBody, ChordSpec, ResultBackend
from conveyor.stores.transport import ResultWrite, Transport

from ..conftest import MakeBackend

BODY = ChordBody(b'{"id":"join","task":"conveyor.chord_join"}', "q", 0)


def part(task_id: str) -> ResultWrite:
    return ResultWrite(task_id, f'{{"task_id":"{task_id}","status":"SUCCESS"}}'.encode(), True)


def start(backend: ResultBackend, members: list[str], enqueue: bool = False) -> None:
    backend.chord_start(ChordSpec("c1", members, BODY, enqueue))


def test_the_last_header_task_completes_the_chord_once(backend: ResultBackend) -> None:
    members = [f"t{i}" for i in range(5)]
    start(backend, members)
    assert backend.chord_members("c1") == members
    fired = [backend.chord_part("c1", part(t)) for t in members[:-1]]
    assert fired == [None] * 4
    assert backend.chord_part("c1", part("t4")) == BODY
    # Stored again (a redelivered header task): counted once, never completes it again.
    assert [backend.chord_part("c1", part(t)) for t in members] == [None] * 5
    assert backend.get("t2") == part("t2").payload


def test_a_task_stored_twice_counts_once(backend: ResultBackend) -> None:
    start(backend, ["a", "b"])
    assert backend.chord_part("c1", part("a")) is None
    assert backend.chord_part("c1", part("a")) is None  # its worker died after storing
    assert backend.chord_part("c1", part("b")) == BODY


def test_recording_the_chord_again_keeps_its_count(backend: ResultBackend) -> None:
    start(backend, ["a", "b"])
    assert backend.chord_part("c1", part("a")) is None
    start(backend, ["a", "b"])  # the task that sent the chord ran again
    assert backend.chord_part("c1", part("b")) == BODY


def test_an_unknown_chord_stores_the_result_and_completes_nothing(
    backend: ResultBackend,
) -> None:
    assert backend.chord_members("nope") is None
    assert backend.chord_part("nope", part("t")) is None
    assert backend.wait("t", 1.0) == part("t").payload


def test_concurrent_header_tasks_complete_the_chord_exactly_once(
    make_backend: MakeBackend,
) -> None:
    members = [f"t{i}" for i in range(200)]
    start(make_backend(), members)
    fired: list[ChordBody] = []
    lock = threading.Lock()

    def finish(ids: list[str]) -> None:
        backend = make_backend()  # its own connection, as a worker process has
        for task_id in ids:
            body = backend.chord_part("c1", part(task_id))
            if body is not None:
                with lock:
                    fired.append(body)

    # Every task stored by two threads at once: the same id counted twice must not be.
    threads = [threading.Thread(target=finish, args=(members[i::4],)) for i in range(4)]
    threads += [threading.Thread(target=finish, args=(members[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert fired == [BODY]


def test_with_the_broker_in_the_same_store_the_body_is_queued_in_that_step(
    kind: str, transport: Transport, backend: ResultBackend
) -> None:
    if not transport.carries_results_of(backend) or kind == "memory":
        pytest.skip("only a broker in the backend's store can take the body in the same step")
    start(backend, ["a", "b"], enqueue=True)
    assert backend.chord_part("c1", part("a")) is None
    assert backend.chord_part("c1", part("b")) is None  # queued, not handed back
    assert backend.chord_part("c1", part("b")) is None
    consumer = transport.consumer(["q"], "c", 10.0)
    try:
        got = consumer.fetch(10, 1.0)
        assert [d.body for d in got] == [BODY.body]
        assert consumer.fetch(10, 0.1) == []
    finally:
        consumer.close()
