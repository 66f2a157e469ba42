"""examples/sentiment: the FastAPI service (async endpoints, conveyor's async client)
enqueues, a real worker scores, the client reads the result, on Redis and on the
embedded SQLite broker. The API is driven with httpx's AsyncClient on the test's event
loop (ASGITransport), and once through a real uvicorn as README.md says."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support import TESTS_ROOT, connected, free_port, wait_for

pytest.importorskip("fastapi", reason="the examples extra is not installed")
pytest.importorskip("uvicorn", reason="the examples extra is not installed")
pytest.importorskip("httpx", reason="the examples extra is not installed")

import httpx
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


class Api:
    """Calls the API with httpx's AsyncClient, each test body on an event loop of its own
    (in this process, so the async client serves the endpoints on that loop)."""

    def run(self, body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
        async def main() -> None:
            transport = httpx.ASGITransport(app=api.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", timeout=15
            ) as http:
                await body(http)

        asyncio.run(main())


@pytest.fixture
def client(broker_url: str, spawn_worker: Any) -> Iterator[Api]:
    """The API, a real worker beside it, both on ``broker_url``."""
    spawn_worker(APP, broker_url, "-c", "2")
    with connected(tasks.app, broker_url):
        yield Api()


def test_score_a_batch(client: Api) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        response = await http.post("/score-batch", json={"texts": REVIEWS})
        assert response.status_code == 202
        task_id = response.json()["task_id"]

        answer = (await http.get(f"/result/{task_id}", params={"wait": 10})).json()
        assert answer["ready"] is True and answer["state"] == "SUCCESS", answer
        labels = [item["label"] for item in answer["result"]]
        assert labels == ["positive", "negative", "positive", "negative"]
        assert all(0.0 <= item["score"] <= 1.0 for item in answer["result"])

    client.run(body)


def test_many_requests_wait_at_once_on_one_loop(client: Api) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        posted = await asyncio.gather(
            *(http.post("/score-batch", json={"texts": [text]}) for text in REVIEWS * 5)
        )
        ids = [response.json()["task_id"] for response in posted]
        answers = await asyncio.gather(
            *(http.get(f"/result/{task_id}", params={"wait": 10}) for task_id in ids)
        )
        labels = [answer.json()["result"][0]["label"] for answer in answers]
        assert labels == ["positive", "negative", "positive", "negative"] * 5

    client.run(body)


def test_result_before_it_is_ready_and_for_unknown_ids(client: Api) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        answer = (await http.get("/result/no-such-task")).json()
        assert answer == {
            "task_id": "no-such-task",
            "state": "PENDING",
            "ready": False,
            "result": None,
        }

    client.run(body)


def test_polling_until_ready_as_a_browser_would(client: Api) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        task_id = (await http.post("/score-batch", json={"texts": REVIEWS[:1]})).json()[
            "task_id"
        ]
        for _ in range(200):
            answer = (await http.get(f"/result/{task_id}")).json()
            if answer["ready"]:
                break
            await asyncio.sleep(0.05)
        assert answer["result"][0]["label"] == "positive"

    client.run(body)


def test_retrain(client: Api) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        task_id = (await http.post("/retrain")).json()["task_id"]
        answer = (await http.get(f"/result/{task_id}", params={"wait": 10})).json()
        assert answer["ready"] is True, answer
        report = answer["result"]
        assert report["examples"] > 200 and report["vocabulary"] > 300
        assert report["holdout_accuracy"] >= 0.85

    client.run(body)


def test_bad_requests_are_refused_before_anything_is_sent(client: Api) -> None:
    async def body(http: httpx.AsyncClient) -> None:
        assert (await http.post("/score-batch", json={"texts": []})).status_code == 422
        assert (await http.post("/score-batch", json={"text": "one"})).status_code == 422
        assert (await http.get("/result/x", params={"wait": 999})).status_code == 422

    client.run(body)


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
