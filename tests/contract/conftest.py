"""The contract suite's fixtures: every broker and every result backend, made fresh for
each test, so one suite proves that all of them keep the same promises.

``redis`` runs on the suite's private redis-server, ``sqlite`` on a file in the test's
tmp_path, ``memory`` on a state of its own (a unique memory:// URL).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.stores.results import ResultBackend
from conveyor.stores.transport import Broker

KINDS = ["redis", "sqlite", "memory"]

MakeBroker = Callable[[], Broker]
MakeBackend = Callable[..., ResultBackend]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL both the broker and the backend of this test live at."""
    if kind == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        return redis_url
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'conveyor.db'}"
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def make_broker(kind: str, url: str) -> Iterator[MakeBroker]:
    """Make brokers on the test's URL (several share one store, as processes would)."""
    made: list[Broker] = []

    def make() -> Broker:
        from conveyor.stores import broker_from_url

        broker = broker_from_url(url)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    return make_broker()


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
