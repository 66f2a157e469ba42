"""The contract suite's fixtures: every transport, coordinator and result backend, made
fresh for each test, so one suite proves that all of them keep the same promises.

``redis`` runs on the suite's private redis-server, ``cluster`` on its Redis Cluster
(three shards), ``sqlite`` on a file in the test's tmp_path, ``memory`` on a state of its
own (a unique memory:// URL). The halves live in ``transport/``, ``coordination/`` and
``results/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.stores import coordinator_for, coordinator_from_url
from conveyor.stores.coordination import Coordinator
from conveyor.stores.results import ResultBackend
from conveyor.stores.transport import Transport

KINDS = ["redis", "cluster", "sqlite", "memory"]

MakeTransport = Callable[[], Transport]
MakeCoordinator = Callable[[], Coordinator]
MakeBackend = Callable[..., ResultBackend]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL the transport, the coordinator and the backend of this test live at."""
    if kind == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return redis_url
    if kind == "cluster":  # the suite's Redis Cluster: three shards, a replica each
        cluster_url: str = request.getfixturevalue("cluster_url")
        return cluster_url
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'conveyor.db'}"
    if kind == "amqp":  # the transport half only (transport/conftest.py)
        amqp_url: str = request.getfixturevalue("amqp_url")
        return amqp_url
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def make_transport(kind: str, url: str) -> Iterator[MakeTransport]:
    """Make transports on the test's URL (several share one store, as processes would)."""
    made: list[Transport] = []

    def make() -> Transport:
        from conveyor.stores import transport_from_url

        transport = transport_from_url(url)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def transport(make_transport: MakeTransport) -> Transport:
    return make_transport()


@pytest.fixture
def make_coordinator(make_transport: MakeTransport) -> MakeCoordinator:
    """Make coordinators the default way: each in the store of a transport of its own."""

    def make() -> Coordinator:
        return coordinator_for(make_transport())

    return make


@pytest.fixture
def coordinator(transport: Transport) -> Coordinator:
    """The coordinator beside ``transport`` (the default: one store)."""
    return coordinator_for(transport)


@pytest.fixture
def make_apart_coordinator(url: str) -> Iterator[MakeCoordinator]:
    """Make coordinators apart from any transport (``coordinator_url``), on the same URL."""
    made: list[Coordinator] = []

    def make() -> Coordinator:
        coordinator = coordinator_from_url(url)
        made.append(coordinator)
        return coordinator

    yield make
    for coordinator in made:
        coordinator.close()


@pytest.fixture
def make_backend(url: str) -> Iterator[MakeBackend]:
    made: list[ResultBackend] = []

    def make(expires: float = 60.0) -> ResultBackend:
        from conveyor.stores import backend_from_url

        backend = backend_from_url(url, expires=expires)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def backend(make_backend: MakeBackend) -> ResultBackend:
    return make_backend()
