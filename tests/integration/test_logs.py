"""Worker logs: --log-format json (one object per line with the task's fields), and
Celery's worker_log_format / worker_task_log_format honoured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor

from ..support import wait_for

APP = "tests.apps.observed"
CHATTY = "tests.apps.observed.chatty"


@pytest.fixture
def client(worker_broker_url: str) -> Iterator[Conveyor]:
    app = Conveyor("client", broker=worker_broker_url)
    try:
        yield app
    finally:
        app.close()


def _json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_lines_carry_the_task(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    worker = spawn_worker(
        APP, worker_broker_url, "-c", "1", "-n", "jsonlog@%h", "-Q", "words",
        "--log-format", "json",
    )
    result = client.send_task(CHATTY, ("banana",), queue="words")
    assert result.get(timeout=20) == "banana"
    wait_for(lambda: "succeeded" in worker.output(), 10, what="the success line")
    lines = _json_lines(worker.output())
    said = [line for line in lines if line["message"] == "the word is banana"]
    assert len(said) == 1
    line = said[0]
    assert line["task_id"] == result.id and line["task_name"] == CHATTY
    assert line["queue"] == "words" and line["retries"] == 0
    assert line["worker"].startswith("jsonlog@")
    assert line["level"] == "WARNING" and line["logger"] == f"conveyor.task.{APP}"
    ready = [line for line in lines if line["message"].endswith(" ready.")]
    assert ready and ready[0]["task_id"] is None
    # Every line the worker wrote on its stderr is JSON (no banner lines between).
    body = [ln for ln in worker.output().splitlines() if ln.strip() and not ln.startswith(
        (" ", "-", "\t")
    )]
    assert all(ln.startswith("{") for ln in body), body


def test_worker_log_formats_are_honoured(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    env = {
        "OBSERVED_LOG_FORMAT": "WORKER|%(levelname)s|%(message)s",
        "OBSERVED_TASK_LOG_FORMAT": "TASK|%(task_name)s|%(task_id)s|%(message)s",
    }
    worker = spawn_worker(APP, worker_broker_url, "-c", "1", env=env)
    result = client.send_task(CHATTY, ("kiwi",))
    assert result.get(timeout=20) == "kiwi"
    wait_for(lambda: "succeeded" in worker.output(), 10, what="the success line")
    output = worker.output()
    assert f"TASK|{CHATTY}|{result.id}|the word is kiwi" in output
    assert "WORKER|INFO|" in output and " ready." in output
