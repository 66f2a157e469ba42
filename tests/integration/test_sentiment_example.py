"""examples/sentiment: the FastAPI service enqueues, a real worker scores, the client
reads the result, on Redis and on the embedded SQLite broker."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support import TESTS_ROOT, connected, free_port, wait_for

pytest.importorskip("fastapi", reason="the examples extra is not installed")
pytest.importorskip("uvicorn", reason="the examples extra is not installed")
pytest.importorskip("httpx", reason="the examples extra is not installed")

import httpx
import uvicorn
from examples.sentiment import api, tasks

APP = "examples.sentiment.tasks"
REVIEWS = [
    "Fast delivery and a great product, I love it.",
    "It broke after a day, a complete waste of money.",
    "The staff were friendly and helpful.",
    "Rude staff and a dirty room.",
]
SQLITE_MISSING = importlib.util.find_spec("conveyor.stores.sqlite.transport") is None


@pytest.fixture(params=["redis", "sqlite"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        url: str = request.getfixturevalue("redis_url")
        return url
    if SQLITE_MISSING:
        pytest.skip("conveyor.stores.sqlite.transport does not import yet")
    return f"sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
def client(broker_url: str, spawn_worker: Any) -> Iterator[httpx.Client]:
    """The API served by uvicorn in this process, a real worker beside it, both on
    ``broker_url``. (Not starlette's TestClient: it now wants httpx2.)"""
    spawn_worker(APP, broker_url, "-c", "2")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api.app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn")
    with connected(tasks.app, broker_url):
        thread.start()
        try:
            wait_for(lambda: server.started, 10, what="uvicorn to start")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
                yield http
        finally:
            server.should_exit = True
            thread.join(10)


def test_score_a_batch(client: httpx.Client) -> None:
    response = client.post("/score-batch", json={"texts": REVIEWS})
    assert response.status_code == 202
    task_id = response.json()["task_id"]

    answer = client.get(f"/result/{task_id}", params={"wait": 10}).json()
    assert answer["ready"] is True and answer["state"] == "SUCCESS", answer
    labels = [item["label"] for item in answer["result"]]
    assert labels == ["positive", "negative", "positive", "negative"]
    assert all(0.0 <= item["score"] <= 1.0 for item in answer["result"])


def test_result_before_it_is_ready_and_for_unknown_ids(client: httpx.Client) -> None:
    answer = client.get("/result/no-such-task").json()
    assert answer == {"task_id": "no-such-task", "state": "PENDING", "ready": False, "result": None}


def test_polling_until_ready_as_a_browser_would(client: httpx.Client) -> None:
    task_id = client.post("/score-batch", json={"texts": REVIEWS[:1]}).json()["task_id"]
    wait_for(
        lambda: client.get(f"/result/{task_id}").json()["ready"],
        10,
        interval=0.05,
        what="the batch to be scored",
    )
    assert client.get(f"/result/{task_id}").json()["result"][0]["label"] == "positive"


def test_retrain(client: httpx.Client) -> None:
    task_id = client.post("/retrain").json()["task_id"]
    answer = client.get(f"/result/{task_id}", params={"wait": 10}).json()
    assert answer["ready"] is True, answer
    report = answer["result"]
    assert report["examples"] > 200 and report["vocabulary"] > 300
    assert report["holdout_accuracy"] >= 0.85


def test_bad_requests_are_refused_before_anything_is_sent(client: httpx.Client) -> None:
    assert client.post("/score-batch", json={"texts": []}).status_code == 422
    assert client.post("/score-batch", json={"text": "one"}).status_code == 422
    assert client.get("/result/x", params={"wait": 999}).status_code == 422


@pytest.mark.redis
def test_the_readme_commands_with_a_real_uvicorn(redis_url: str, spawn_worker: Any) -> None:
    """``uvicorn examples.sentiment.api:app`` from the repository root, as README.md says."""
    spawn_worker(APP, redis_url, "-c", "1")
    port = free_port()
    env = dict(os.environ, CONVEYOR_BROKER_URL=redis_url)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.sentiment.api:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=TESTS_ROOT.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def listening() -> bool:
            try:
                return httpx.get(f"{base}/docs", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(listening, 20, interval=0.1, what="uvicorn to listen")
        task_id = httpx.post(f"{base}/score-batch", json={"texts": REVIEWS}).json()["task_id"]
        answer = httpx.get(f"{base}/result/{task_id}", params={"wait": 10}, timeout=15).json()
        assert [r["label"] for r in answer["result"]] == [
            "positive",
            "negative",
            "positive",
            "negative",
        ]
    finally:
        server.terminate()
        server.wait(10)
