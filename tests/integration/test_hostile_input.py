"""Promise 5 against hostile messages, on Redis and SQLite with real workers: nothing a
message holds crashes a worker, and a caller waiting on a refused message hears at once
(REJECTED) instead of waiting out its timeout."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor, states
from conveyor.exceptions import MessageError
from conveyor.message import Envelope, encode_envelope

APP = "tests.apps.hostile"
ADD = f"{APP}.add"


@pytest.fixture
def app(worker_broker_url: str) -> Iterator[Conveyor]:
    """A sender in this process, on the same broker as the workers."""
    sender = Conveyor("sender", broker=worker_broker_url, set_as_current=False)
    yield sender
    sender.close()


def push(app: Conveyor, body: bytes) -> None:
    """Put raw bytes in the default queue, as a broken or hostile producer would."""
    app.broker.publish("celery", (body,))


def refused(app: Conveyor, task_id: str, reason: str) -> None:
    """The task is REJECTED with ``reason`` and ``get()`` says so at once."""
    result = app.AsyncResult(task_id)
    with pytest.raises(MessageError, match=re.escape(reason)):
        result.get(timeout=10)
    assert result.state == states.REJECTED
    (letter,) = [d for d in app.coordinator.dead_letters() if reason in d.reason]
    assert letter.queue == "celery"


def test_pickle_sent_to_a_json_worker_is_rejected_at_once(
    app: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1")
    body = encode_envelope(Envelope(id="pickled-1", task=ADD, args=[1, 2]), "pickle")
    push(app, body)
    refused(app, "pickled-1", "content type 'pickle' is not in accept_content (json)")
    assert app.send_task(ADD, args=[2, 3]).get(timeout=10) == 5


def test_msgpack_sent_to_a_json_worker_is_rejected_at_once(
    app: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1")
    push(app, encode_envelope(Envelope(id="packed-1", task=ADD, args=[1, 2]), "msgpack"))
    refused(app, "packed-1", "content type 'msgpack' is not in accept_content (json)")


class _ExitOnLoad:
    """Unpickling this ends the process at once: a message whose decoding kills the
    child every time it is delivered."""

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return (os._exit, (3,))


def test_a_message_that_kills_its_child_while_decoding_is_dead_lettered(
    app: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker(
        APP, worker_broker_url, "-c", "1",
        env={"TEST_ACCEPT": "json,pickle", "TEST_MAX_DELIVERIES": "2", "TEST_LEASE_SECONDS": "1"},
    )
    body = b"\x00pickle\x00" + pickle.dumps(
        {"id": "poison-1", "task": ADD, "args": [_ExitOnLoad()]}
    )
    push(app, body)
    refused(app, "poison-1", "its worker died each time (task_max_deliveries=2)")
    assert app.send_task(ADD, args=[2, 3]).get(timeout=10) == 5
    assert worker.process.poll() is None


def test_a_message_over_the_size_limit_is_dead_lettered_on_receipt(
    app: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1", env={"TEST_MAX_MESSAGE_SIZE": "2000"})
    body = encode_envelope(Envelope(id="big-1", task=f"{APP}.echo", args=["x" * 5000]))
    push(app, body)
    refused(app, "big-1", "message of 5,")
    assert "is over broker_max_message_size (2,000)" in app.coordinator.dead_letters()[0].reason
    assert app.send_task(f"{APP}.echo", args=["small"]).get(timeout=10) == "small"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"id": "deep-1", "task": "t", "args": ' + b"[" * 5000 + b"]" * 5000 + b"}",
         "nested too deeply"),
        (b'{"id": "utf-1", "task": "t", "args": ["\xff\xfe"]}', "Invalid UTF-8"),
        (b'{"id": "v-1", "task": "' + ADD.encode() + b'", "v": 0}', "invalid envelope"),
        (b'{"id": "r-1", "task": "' + ADD.encode() + b'", "retries": -1}', "invalid envelope"),
        (b'{"id": "p-1", "task": "' + ADD.encode() + b'", "priority": 9999}', "invalid envelope"),
        (b'{"id": "l-1", "task": "' + ADD.encode() + b'", "time_limit": 0}', "invalid envelope"),
        (b'{"id": "' + b"i" * 300 + b'", "task": "t"}', "invalid envelope"),
        (b'{"id": "n-1", "task": ""}', "invalid envelope"),
        (b'{"id": "k-1", "task": "t", "kwargs": [1]}', "invalid envelope"),
    ],
    ids=["deep", "bad-utf8", "version-0", "negative-retries", "priority", "zero-time-limit",
         "long-id", "empty-name", "kwargs-list"],
)
def test_envelope_fields_are_validated_as_a_whole(
    body: bytes, reason: str, app: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1")
    push(app, body)
    app.send_task(ADD, args=[1, 1]).get(timeout=10)
    (letter,) = app.coordinator.dead_letters()
    assert reason in letter.reason
    assert letter.body == body
