"""Every store raises one ``BrokerUnavailable`` (a ``ConnectionError``) when its server
goes away, mapped in one place per store, with the URL's password masked; nothing above
the store sees the client library's classes.

A private redis-server is started, used, and SIGKILLed mid-run (the suite's shared one
is never touched).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from conveyor.exceptions import BrokerUnavailable
from conveyor.stores import backend_from_url, coordinator_for, transport_from_url
from conveyor.stores.sqlite.database import SQLiteBusy

from ..support import RedisServer, free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def doomed(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, free_port())
    server.start()
    yield server
    server.stop(signal.SIGKILL)


def test_a_redis_store_that_dies_raises_broker_unavailable_everywhere(
    doomed: RedisServer,
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{doomed.port}/0"
    doomed.client().config_set("requirepass", "hunter2")
    transport = transport_from_url(url)
    coordinator = coordinator_for(transport)
    backend = backend_from_url(url)
    transport.publish("q", [b"x"])
    consumer = transport.consumer(["q"], "c1", 10.0, results=backend)
    (delivery,) = consumer.fetch(1, 1.0)
    assert coordinator.revocations(0) is None and backend.get("t") is None
    doomed.stop(signal.SIGKILL)
    calls: list[Callable[[], Any]] = [
        lambda: transport.publish("q", [b"y"]),
        lambda: consumer.fetch(1, 0.1),
        transport.queues,
        lambda: coordinator.revocations(0),
        lambda: coordinator.hold_lease("beat", "me", 5),
        coordinator.workers,
        lambda: consumer.ack(delivery),  # kept, and sent again on the next connection
        consumer.flush,
    ]
    for index, call in enumerate(calls):
        with pytest.raises(BrokerUnavailable) as caught:
            call()
            pytest.fail(f"call {index} did not raise")
        assert isinstance(caught.value, ConnectionError)
        assert "hunter2" not in str(caught.value) and "***" in caught.value.url
    for store in (backend, transport):
        store.close()


def test_redis_clients_retry_logic_still_sees_its_own_class() -> None:
    """Mapped errors stay redis-py ConnectionErrors, so its retry and reconnect logic
    (Sentinel failover, the backend's retries) works as before."""
    from conveyor.stores.redis.connection import RedisUnavailable

    assert issubclass(RedisUnavailable, BrokerUnavailable)
    assert issubclass(RedisUnavailable, redis.ConnectionError)


def test_a_locked_sqlite_file_is_broker_unavailable() -> None:
    assert issubclass(SQLiteBusy, BrokerUnavailable)
