"""Prometheus metrics scraped from a real worker (--metrics-port) and from
``conveyor exporter``, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor import Conveyor

from ..support import TESTS_ROOT, free_port, wait_for

APP = "tests.apps.observed"
NAME = "tests.apps.observed"


@pytest.fixture
def client(worker_broker_url: str) -> Iterator[Conveyor]:
    app = Conveyor("client", broker=worker_broker_url)
    try:
        yield app
    finally:
        app.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], metric: str, **labels: str) -> float | None:
    return samples.get((metric, tuple(sorted(labels.items()))))


def test_worker_metrics_after_a_known_workload(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    port = free_port()
    spawn_worker(APP, worker_broker_url, "-c", "2", "--metrics-port", str(port))
    adds = [client.send_task(f"{NAME}.add", (i, i)) for i in range(10)]
    assert [r.get(timeout=20) for r in adds] == [2 * i for i in range(10)]
    failed = client.send_task(f"{NAME}.fail", ("on purpose",))
    with pytest.raises(ValueError, match="on purpose"):
        failed.get(timeout=20)
    assert client.send_task(f"{NAME}.flaky", (2,)).get(timeout=20) == 2
    client.send_task("no.such.task")  # dead-lettered
    # Three messages wait on a queue nobody consumes: depth and age from the broker.
    for _ in range(3):
        client.send_task(f"{NAME}.add", (1, 1), queue="nobody")

    def settled() -> bool:
        samples = scrape(port)
        return value(samples, "conveyor_tasks_total", name="no.such.task", state="rejected") == 1

    wait_for(settled, 20, what="every outcome counted")
    samples = scrape(port)
    total = "conveyor_tasks_total"
    assert value(samples, total, name=f"{NAME}.add", state="succeeded") == 10
    assert value(samples, total, name=f"{NAME}.fail", state="failed") == 1
    assert value(samples, total, name=f"{NAME}.flaky", state="retried") == 2
    assert value(samples, total, name=f"{NAME}.flaky", state="succeeded") == 1
    assert value(samples, "conveyor_task_retries_total", name=f"{NAME}.flaky") == 2
    assert value(samples, "conveyor_dead_letters_total", name="no.such.task") == 1
    runtime = "conveyor_task_runtime_seconds_count"
    assert value(samples, runtime, name=f"{NAME}.add") == 10
    assert value(samples, runtime, name=f"{NAME}.fail") == 1
    # Time in queue: every start is observed, retries included (3 runs of flaky).
    queued = "conveyor_task_queue_seconds_count"
    assert value(samples, queued, name=f"{NAME}.add") == 10
    assert value(samples, queued, name=f"{NAME}.flaky") == 3
    bucket = "conveyor_task_runtime_seconds_bucket"
    assert value(samples, bucket, name=f"{NAME}.add", le="+Inf") == 10
    assert value(samples, "conveyor_tasks_in_flight", name=f"{NAME}.add") == 0
    assert value(samples, "conveyor_workers_up") == 1
    assert value(samples, "conveyor_queue_depth", queue="nobody") == 3
    age = value(samples, "conveyor_queue_oldest_message_age_seconds", queue="nobody")
    assert age is not None and age > 0


def test_in_flight_counts_running_tasks(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    port = free_port()
    spawn_worker(APP, worker_broker_url, "-c", "2", "--metrics-port", str(port))
    for _ in range(2):
        client.send_task(f"{NAME}.spin", (3.0,))
    wait_for(
        lambda: value(scrape(port), "conveyor_tasks_in_flight", name=f"{NAME}.spin") == 2,
        15,
        what="two tasks in flight",
    )


def test_exporter_serves_the_broker_side(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any, tmp_path: Path
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1", "-Q", "busy")
    for _ in range(4):
        client.send_task(f"{NAME}.add", (1, 2), queue="idle")
    port = free_port()
    env = dict(os.environ, CONVEYOR_BROKER_URL=worker_broker_url)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_ROOT.parent), env.get("PYTHONPATH", "")])
    log = open(tmp_path / "exporter.log", "wb")  # noqa: SIM115 - closed below
    exporter = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "-A", APP, "exporter", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def up() -> bool:
            try:
                return value(scrape(port), "conveyor_queue_depth", queue="idle") == 4
            except OSError:
                return False

        wait_for(up, 20, what="the exporter answering")
        samples = scrape(port)
        assert value(samples, "conveyor_workers_up") == 1
        age = value(samples, "conveyor_queue_oldest_message_age_seconds", queue="idle")
        assert age is not None and age > 0
    finally:
        exporter.terminate()
        exporter.wait(10)
        log.close()


def test_a_port_in_use_is_a_clear_error(worker_broker_url: str, spawn_worker: Any) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = spawn_worker(APP, worker_broker_url, "--metrics-port", str(port), wait=False)
        assert worker.wait(30) != 0
    assert f"cannot serve metrics on port {port}" in worker.output()
