"""Fuzzing promise 5 on Redis and SQLite: hypothesis makes malformed messages (random
bytes, JSON of the wrong shape, huge, deeply nested, invalid UTF-8, broken frames, and
envelopes with each field wrong in turn) and pushes them straight into the queue, each
followed by a good task. The worker stays up, every good task succeeds, and every bad
message is in the dead-letter queue with a reason.

The example count is bounded (``FUZZ_EXAMPLES``) so each broker's run stays well under
a minute; raise it locally with ``CONVEYOR_FUZZ_EXAMPLES=500``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import Conveyor

from ..support import wait_for

APP = "tests.apps.hostile"
ADD, ECHO = f"{APP}.add", f"{APP}.echo"
MAX_SIZE = 50_000  # broker_max_message_size of the fuzzed worker
FUZZ_EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "60"))

# A value of each JSON type, to put where another type belongs.
WRONG_VALUES: dict[str, list[Any]] = {
    "v": [0, -1, "1", 2.5, None, 99],
    "id": [None, 7, "", ["x"], {"a": 1}, "i" * 256],
    "task": [None, 7, "", ["x"], "no.such.task"],
    "args": ["1, 2", 3, {"x": 1}, None],
    "kwargs": [[1, 2], "x=1", 3, None],
    "eta": ["soon", [1], {"t": 1}, True],
    "expires": ["later", [1], True],
    "retries": [-1, "0", 1.5, None, True],
    "priority": [-1, 256, "high", 1.5],
    "root_id": [1, ["x"], "r" * 256],
    "parent_id": [1, {"x": 1}],
    "group_id": [1, [1]],
    "ignore_result": ["yes", 1, None],
    "time_limit": [0, -5, "10", [1]],
    "soft_time_limit": [0, -1, "5"],
    "sent_at": ["now", None, [1]],
    "headers": [[1], "h", 3],
    "callbacks": ["cb", {"a": 1}, [1, 2]],
    "errbacks": ["eb", 3, [None]],
    "chord": [[1], "chord", 5],
}


def _good_envelope(task_id: str) -> dict[str, Any]:
    return {"v": 1, "id": task_id, "task": ADD, "args": [1, 2], "kwargs": {}}


@st.composite
def wrong_field(draw: st.DrawFn) -> bytes:
    """A real task's envelope with exactly one field of the wrong type or range."""
    field = draw(st.sampled_from(sorted(WRONG_VALUES)))
    envelope = _good_envelope(f"bad-{draw(st.uuids())}")
    envelope[field] = draw(st.sampled_from(WRONG_VALUES[field]))
    return json.dumps(envelope).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

# A JSON document that is not an object with a string id and a string task name.
wrong_shape = json_values.filter(
    lambda v: not (isinstance(v, dict) and isinstance(v.get("id"), str))
).map(lambda v: json.dumps(v).encode())

random_bytes = st.binary(min_size=0, max_size=512).filter(
    lambda b: not b.lstrip().startswith(b"{")
)

deep = st.integers(min_value=1_100, max_value=20_000).map(
    lambda depth: b'{"id": "deep", "task": "' + ADD.encode() + b'", "args": '
    + b"[" * depth + b"]" * depth + b"}"
)

invalid_utf8 = st.binary(min_size=1, max_size=16).map(
    lambda tail: b'{"id": "utf", "task": "' + ADD.encode() + b'", "args": ["\xff' + tail + b'"]}'
)

huge = st.integers(min_value=MAX_SIZE + 1, max_value=MAX_SIZE * 3).map(
    lambda size: json.dumps(_good_envelope("huge") | {"args": ["x" * size, 0]}).encode()
)

bad_frame = st.tuples(st.binary(max_size=40), st.binary(max_size=64)).map(
    lambda parts: b"\x00" + parts[0].replace(b"\x00", b"") + b"\x00" + parts[1]
)

bad_messages = st.one_of(
    wrong_field(), wrong_shape, random_bytes, deep, invalid_utf8, huge, bad_frame
)


@pytest.fixture
def sender(worker_broker_url: str) -> Iterator[Conveyor]:
    app = Conveyor("fuzzer", broker=worker_broker_url, set_as_current=False)
    yield app
    app.close()


def test_fuzzed_messages_are_dead_lettered_and_good_tasks_still_run(
    sender: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker(
        APP, worker_broker_url, "-c", "2", env={"TEST_MAX_MESSAGE_SIZE": str(MAX_SIZE)}
    )
    seen: Counter[bytes] = Counter()
    counter = iter(range(1_000_000))

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch=st.lists(bad_messages, min_size=1, max_size=6))
    def feed(batch: list[bytes]) -> None:
        good = []
        for body in batch:
            sender.broker.publish("celery", (body,))
            number = next(counter)
            good.append((number, sender.send_task(ECHO, args=[number])))
        for number, result in good:
            assert result.get(timeout=20) == number
        seen.update(batch)
        wait_for(lambda: _dead_count(sender) == seen.total(), 20, what="the dead letters")

    feed()
    letters = sender.coordinator.dead_letters(limit=1_000_000)
    assert Counter(letter.body for letter in letters) == seen
    assert all(letter.reason and letter.queue == "celery" for letter in letters)
    assert worker.process.poll() is None
    output = worker.output()
    assert "Traceback" not in output and "crashed" not in output, output[-3000:]


def _dead_count(app: Conveyor) -> int:
    return len(app.coordinator.dead_letters(limit=1_000_000))
