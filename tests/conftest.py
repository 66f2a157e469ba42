"""Shared fixtures: a private redis-server, and real worker processes.

The suite never touches a Redis it did not start: each session starts its own
redis-server on a free port in a temp dir and stops it by PID.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import RedisServer, WorkerProcess, free_port
from .support_cluster import RedisClusterNodes, SentinelSetup
from .support_rabbitmq import RabbitNode

TESTS = Path(__file__).parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the suite's own redis-server."""
    redis_server.ensure_running()
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """The suite's own Redis Cluster: three masters, one replica each."""
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterNodes) -> str:
    """``redis+cluster://`` to the suite's cluster, every shard flushed."""
    redis_cluster.flush()
    return redis_cluster.url()


@pytest.fixture(scope="session")
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """The suite's own master, replica and three sentinels."""
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


@pytest.fixture(scope="session")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    """The suite's own RabbitMQ node (free ports, its own node name and data dir),
    started once per session, only when a test asks for it."""
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def amqp_url(rabbit_node: RabbitNode) -> str:
    """A vhost of its own on the suite's RabbitMQ node."""
    rabbit_node.ensure_running()
    return rabbit_node.vhost_url()


@pytest.fixture
def seed(
    amqp_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The seed scenario's environment (tests/apps/amqp_seed.py): messages on a vhost of
    the suite's RabbitMQ, results, coordination and the tasks' side channel on its Redis;
    set here and in the app, so the test process and its workers agree."""
    from .apps import amqp_seed

    env = {
        "CONVEYOR_BROKER_URL": amqp_url,
        "CONVEYOR_RESULT_BACKEND": redis_url,
        "AMQP_SIDE_URL": redis_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = amqp_seed.app
    app.conf.broker_url = amqp_url
    app.conf.result_backend = redis_url
    yield env
    app.close()


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[object]:
    """Start real worker processes: ``spawn_worker("tests.apps.basic", broker_url, "-c", "2")``.

    Each runs in its own process group and is stopped (SIGTERM, then SIGKILL) at the end.
    """
    started: list[WorkerProcess] = []

    def spawn(
        app: str,
        broker_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        loglevel: str = "info",
    ) -> WorkerProcess:
        environment = dict(os.environ)
        environment["CONVEYOR_BROKER_URL"] = broker_url
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS.parent), environment.get("PYTHONPATH", "")]
        )
        environment.update(env or {})
        command = [sys.executable, "-m", "conveyor", "-A", app, "worker", "-l", loglevel, *args]
        worker = WorkerProcess(command, environment, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.start()
        if wait:
            worker.wait_ready()
        return worker

    yield spawn
    for worker in started:
        worker.stop()


@pytest.fixture(params=["redis", "sqlite"])
def worker_broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A broker that worker processes can share: the private Redis, or an SQLite file.
    Tests that record side effects keep using the private Redis for that
    (``TEST_SIDE_URL``), whichever broker runs the tasks."""
    redis_url: str = request.getfixturevalue("redis_url")
    if request.param == "redis":
        return redis_url
    return f"sqlite:///{tmp_path / 'broker.db'}"
