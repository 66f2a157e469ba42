"""Redis Sentinel: ``sentinel://`` URLs as Celery writes them, with ``master_name`` in the
transport options; the master the sentinels name is the one used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.exceptions import ConfigurationError
from conveyor.stores import backend_from_url, transport_from_url
from conveyor.stores.redis.topology import RedisOptions, parse_sentinel_url

from ..support_cluster import SentinelSetup

pytestmark = [pytest.mark.redis]


def test_a_sentinel_url_is_read_as_kombu_reads_it() -> None:
    address = parse_sentinel_url(
        "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://10.0.0.2:26380/2;sentinel://h3"
    )
    assert address.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("h3", 26379)]
    assert (address.db, address.username, address.password) == (2, None, "s3cret")


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("sentinel://127.0.0.1:26379", {}, "needs the master's name"),
        ("sentinel://127.0.0.1:26379", {"master_name": 3}, "master_name must be a string"),
        ("sentinel://127.0.0.1:x", {"master_name": "m"}, "bad port"),
        ("sentinel://127.0.0.1/db", {"master_name": "m"}, "must be a number"),
        ("sentinel://h;redis://h", {"master_name": "m"}, "expected sentinel://host:port"),
        ("redis://h", {"wait_for_replicas": -1}, "wait_for_replicas must be an integer >= 0"),
        ("redis://h", {"wait_timeout_ms": "1s"}, "wait_timeout_ms must be an integer >= 0"),
        ("redis://h", {"failover_timeout": "x"}, "failover_timeout must be seconds"),
    ],
)
def test_a_sentinel_setting_conveyor_cannot_read_is_a_clear_error(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        transport_from_url(url, transport_options=options)
    with pytest.raises(ConfigurationError, match=message):
        RedisOptions.read(url, options)


@pytest.fixture
def sentinel(sentinel_setup: SentinelSetup) -> SentinelSetup:
    sentinel_setup.flush()
    return sentinel_setup


@pytest.fixture
def app(sentinel: SentinelSetup) -> Iterator[Conveyor]:
    app = Conveyor(
        "sentinel-test",
        broker_url=sentinel.url(),
        broker_transport_options={"master_name": sentinel.master_name},
    )
    yield app
    app.close()


def test_broker_and_backend_use_the_master_the_sentinels_name(
    sentinel: SentinelSetup,
) -> None:
    options = {"master_name": sentinel.master_name}
    broker = transport_from_url(sentinel.url(), transport_options=options)
    backend = backend_from_url(sentinel.url(), transport_options=options)
    try:
        broker.publish("q", [b"one", b"two"])
        assert {s.name: s.ready for s in broker.queues()} == {"q": 2}
        master = sentinel.current_master().client()
        assert master.llen(broker.keys.level("q", 0)) == 2  # type: ignore[attr-defined]
        backend.store("t1", b"meta", final=True)
        assert backend.wait("t1", timeout=1) == b"meta"
    finally:
        broker.close()
        backend.close()


def test_result_backend_transport_options_name_the_backend_master(
    sentinel: SentinelSetup, redis_url: str
) -> None:
    app = Conveyor(
        "sentinel-backend",
        broker_url=redis_url,
        result_backend=sentinel.url(),
        result_backend_transport_options={"master_name": sentinel.master_name},
    )
    try:
        app.backend.store("t2", b"meta", final=True)
        assert sentinel.current_master().client().exists(app.backend.keys.result("t2"))  # type: ignore[attr-defined]
    finally:
        app.close()


def test_a_worker_runs_tasks_through_sentinel(
    sentinel: SentinelSetup, redis_url: str, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ..apps import failover

    monkeypatch.setenv("TEST_SIDE_URL", redis_url)
    options = f'{{"master_name": "{sentinel.master_name}", "wait_for_replicas": 1}}'
    monkeypatch.setenv("TEST_TRANSPORT_OPTIONS", options)
    failover.app.close()
    failover.app.conf.broker_url = sentinel.url()
    failover.app.conf.broker_transport_options = {
        "master_name": sentinel.master_name, "wait_for_replicas": 1,
    }  # fmt: skip
    try:
        spawn_worker("tests.apps.failover", sentinel.url(), "-c", "2", env=dict(os.environ))
        results = failover.add.delay_many([(i, i) for i in range(50)])
        assert [r.get(timeout=20) for r in results] == [2 * i for i in range(50)]
    finally:
        failover.app.close()
