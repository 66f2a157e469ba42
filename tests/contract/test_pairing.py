"""A transport paired with a coordinator on another store (``coordinator_url``), and a
configuration that lacks a capability: a ConfigurationError at start, never a
``NotImplementedError`` mid-run.

``MessagesOnly`` below is a transport that only moves messages, as an AMQP one would: no
leases and no coordination state. It is a real transport (memory underneath), plugged in
by scheme the way any other would be.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.exceptions import ConfigurationError
from conveyor.stores import coordinator_for, register_transport
from conveyor.stores.memory.transport import MemoryTransport
from conveyor.stores.redis.coordination import RedisCoordinator
from conveyor.stores.results import ResultBackend
from conveyor.stores.transport import Delivery, QueueStats, Transport, TransportConsumer
from conveyor.worker.main import Worker

from ..apps import contract
from ..support import connected
from .test_worker import ThreadWorker

pytestmark = pytest.mark.timeout(60)


class MessagesOnly(Transport):
    """Moves messages and nothing else."""

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.location = url
        self._inner = MemoryTransport("memory://" + url.split("://", 1)[1])

    def publish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        self._inner.publish(queue, bodies, priority=priority, countdown=countdown, eta=eta)

    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None = None,
    ) -> TransportConsumer:
        return self._inner.consumer(queues, consumer_id, lease_seconds)

    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        self._inner.release(consumer_id, deliveries)

    def queues(self) -> list[QueueStats]:
        return self._inner.queues()

    def purge(self, queues: Sequence[str]) -> int:
        return self._inner.purge(queues)

    def close(self) -> None:
        self._inner.close()


register_transport("messagesonly", MessagesOnly)


def messages_only_app(**settings: Any) -> Conveyor:
    url = f"messagesonly://{uuid.uuid4().hex}"
    backend = f"memory://{uuid.uuid4().hex}"  # results cannot live beside the messages
    return Conveyor("messages-only", broker=url, backend=backend, set_as_current=False, **settings)


# a transport that only moves messages ---------------------------------------------------


def test_without_a_coordinator_url_it_coordinates_in_the_result_backends_store() -> None:
    """Issue 15: a broker that only moves messages pairs by default with the store of
    the result backend (one Redis or SQLite for both)."""
    backend = f"memory://{uuid.uuid4().hex}"
    app = Conveyor(
        "messages-only",
        broker="messagesonly://user:hunter2@somewhere/0",
        backend=backend,
        set_as_current=False,
    )
    assert app.coordinator.url == backend
    app.close()


@pytest.mark.parametrize("pool", ["threads", "solo", "prefork"])
def test_a_pool_that_needs_leases_refuses_to_start_and_loses_nothing(pool: str) -> None:
    app = messages_only_app(coordinator_url=f"memory://{uuid.uuid4().hex}")
    app.broker.publish("celery", [b"waiting"])
    worker = Worker(app, pool=pool, concurrency=1)
    with pytest.raises(ConfigurationError, match="leases"):
        worker.start()
    assert [q.ready for q in app.broker.queues()] == [1]  # nothing taken
    app.close()


def test_it_pairs_with_a_coordinator_on_another_store() -> None:
    app = messages_only_app(coordinator_url=f"memory://{uuid.uuid4().hex}")
    app.control.revoke("t-1")
    revoked = app.coordinator.revocations(0)
    assert revoked is not None and revoked.revoked == {"t-1"}
    assert app.coordinator.hold_lease("beat", "me", 5)
    app.close()


def test_an_unknown_coordinator_url_is_a_clear_error() -> None:
    app = messages_only_app(coordinator_url="zookeeper://elsewhere")
    with pytest.raises(ConfigurationError, match="unsupported coordinator URL"):
        _ = app.coordinator


def test_mailbox_and_event_stream_live_in_a_redis_coordinators_store(redis_url: str) -> None:
    """As for AMQP: a transport without the mailbox and event-log capabilities keeps
    them in its coordinator's store."""
    from conveyor.stores.eventlog import event_log_for
    from conveyor.stores.mailbox import mailbox_for
    from conveyor.stores.probe import oldest_waiting
    from conveyor.stores.redis.eventlog import RedisEventLog
    from conveyor.stores.redis.mailbox import RedisMailbox

    app = messages_only_app(coordinator_url=redis_url)
    try:
        coordinator = app.coordinator
        assert isinstance(coordinator, RedisCoordinator)
        mailbox_for(app.broker, coordinator).post(["w1@pairing"], b"ping", ttl=5)
        assert RedisMailbox(coordinator).take("w1@pairing") == [b"ping"]
        event_log_for(app.broker, coordinator).append([b'{"type": "x"}'], max_len=10)
        assert [body for _, body in RedisEventLog(coordinator).read(None, 10)] == [
            b'{"type": "x"}'
        ]
        assert oldest_waiting(app.broker, ["celery"]) == {}  # no probe: no age, no error
    finally:
        app.close()


def test_a_new_store_plugs_in_its_mailbox_by_offering_the_capability() -> None:
    from conveyor.stores.eventlog import EventLog, EventLogStore, event_log_for
    from conveyor.stores.mailbox import Mailbox, MailboxStore, mailbox_for
    from conveyor.stores.memory.eventlog import MemoryEventLog
    from conveyor.stores.memory.mailbox import MemoryMailbox

    class WithMailbox(MessagesOnly, MailboxStore, EventLogStore):
        def control_mailbox(self) -> Mailbox:
            return MemoryMailbox(self._inner)

        def event_log(self) -> EventLog:
            return MemoryEventLog(self._inner)

    transport = WithMailbox(f"withmailbox://{uuid.uuid4().hex}")
    assert isinstance(mailbox_for(transport), MemoryMailbox)
    assert isinstance(event_log_for(transport), MemoryEventLog)
    with pytest.raises(ConfigurationError, match="coordinator_url"):
        mailbox_for(MessagesOnly(f"messagesonly://{uuid.uuid4().hex}"))
    with pytest.raises(ConfigurationError, match="coordinator_url"):
        event_log_for(MessagesOnly(f"messagesonly://{uuid.uuid4().hex}"))


# a sqlite or memory transport with a redis coordinator ---------------------------------


@pytest.fixture(params=["sqlite", "memory"])
def paired(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Conveyor]:
    transport_url = (
        f"sqlite:///{tmp_path / 'messages.db'}"
        if request.param == "sqlite"
        else f"memory://{uuid.uuid4().hex}"
    )
    app = Conveyor("paired", broker=transport_url, coordinator_url=redis_url, set_as_current=False)
    yield app
    app.close()


def test_the_coordinator_state_lives_in_redis_not_beside_the_messages(paired: Conveyor) -> None:
    assert isinstance(paired.coordinator, RedisCoordinator)
    own_store = coordinator_for(paired.broker)
    paired.control.revoke("t-1")
    paired.control.rate_limit("tasks.slow", "5/s")
    revoked = paired.coordinator.revocations(0)
    assert revoked is not None and revoked.revoked == {"t-1"}
    assert paired.coordinator.rate_limits() == {"tasks.slow": "5/s"}
    assert own_store.revocations(0) is None
    assert own_store.rate_limits() == {}


def test_a_unique_send_claims_in_redis_and_publishes_on_the_transport(paired: Conveyor) -> None:
    @paired.task(name="tasks.once")
    def once() -> None:
        """Sent uniquely."""

    first = once.apply_async(idempotency_key="k")
    second = once.apply_async(idempotency_key="k")
    assert second.id == first.id
    assert sum(q.ready for q in paired.broker.queues()) == 1
    assert paired.coordinator.claim_unique("tasks.once:k", "other", 5) == first.id


def test_a_worker_runs_tasks_with_its_coordinator_elsewhere(
    tmp_path: Path, redis_url: str, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefork worker processes on an SQLite file, their registry, revocations and
    limits in Redis: tasks run, results come back, the worker is listed in Redis."""
    url = f"sqlite:///{tmp_path / 'messages.db'}"
    app = contract.app
    monkeypatch.setenv("CONTRACT_RECORD_DIR", str(tmp_path))
    monkeypatch.setitem(app.conf, "coordinator_url", redis_url)
    with connected(app, url):
        spawn_worker(
            "tests.apps.contract", url, "-c", "2", env={"CONVEYOR_COORDINATOR_URL": redis_url}
        )
        assert contract.add.delay(2, 3).get(timeout=20) == 5
        assert isinstance(app.coordinator, RedisCoordinator)
        assert len(app.coordinator.workers()) == 1
        assert coordinator_for(app.broker).workers() == []


def test_a_thread_worker_runs_tasks_on_memory_with_a_redis_coordinator(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = contract.app
    monkeypatch.setenv("CONTRACT_RECORD_DIR", str(tmp_path))
    monkeypatch.setitem(app.conf, "coordinator_url", redis_url)
    with connected(app, f"memory://{uuid.uuid4().hex}"):
        worker = ThreadWorker(app, 2).start()  # waits until it is listed in Redis
        try:
            assert contract.add.delay(4, 5).get(timeout=20) == 9
            assert coordinator_for(app.broker).workers() == []
        finally:
            worker.stop()
