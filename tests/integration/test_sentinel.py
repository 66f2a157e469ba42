"""Redis Sentinel: ``sentinel://`` URLs as Celery writes them, with ``master_name`` in the
transport options; the master the sentinels name is the one used."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.exceptions import BrokerUnavailable, ConfigurationError
from conveyor.stores import backend_from_url, transport_from_url
from conveyor.stores.redis.topology import RedisOptions, parse_sentinel_url

from ..support import wait_for
from ..support_cluster import SentinelSetup, failed_over

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


def test_a_tls_sentinel_setup_with_broker_use_ssl_follows_a_failover(tmp_path: Path) -> None:
    """Master, replica and sentinels speaking TLS only, with client certificates, as
    kombu reads it: broker_use_ssl / redis_backend_use_ssl for the master's connections,
    the sentinels' TLS in sentinel_kwargs. After the master is killed, the same
    transport reaches the promoted replica over TLS; an unknown CA is refused."""
    from ..certs import issue

    ca = issue("conveyor test CA", ca=True)
    ca.write(tmp_path, "ca")
    issue("stranger CA", ca=True).write(tmp_path, "stranger-ca")
    issue("127.0.0.1", issuer=ca, ip="127.0.0.1").write(tmp_path, "server")
    issue("client", issuer=ca).write(tmp_path, "client")
    setup = SentinelSetup(tmp_path / "nodes", tls_dir=tmp_path)
    tls = setup.client_tls()
    assert tls is not None
    options = {
        "master_name": setup.master_name,
        "sentinel_kwargs": {"ssl": True, **tls},
        "failover_timeout": 20,
    }
    try:
        setup.start()
        transport = transport_from_url(setup.url(), transport_options=options, use_ssl=tls)
        backend = backend_from_url(setup.url(), transport_options=options, use_ssl=tls)
        try:
            transport.publish("q", [b"before"])
            backend.store("t1", b"meta", final=True)
            assert backend.wait("t1", timeout=1) == b"meta"
            setup.master.client().execute_command("WAIT", 1, 2000)
            old = setup.current_master()
            old.kill(signal.SIGKILL)
            wait_for(lambda: failed_over(setup, old.port), 30, interval=0.1,
                     what="a sentinel-led failover")  # fmt: skip
            transport.publish("q", [b"after"])
            consumer = transport.consumer(["q"], "c1", 30)
            got = consumer.fetch(10, timeout=2)
            assert sorted(d.body for d in got) == [b"after", b"before"]
            consumer.close()
            assert backend.get("t1") == b"meta"
            assert setup.current_master().port != old.port
        finally:
            transport.close()
            backend.close()
        stranger = {**tls, "ssl_ca_certs": str(tmp_path / "stranger-ca.pem")}
        quick = {**options, "failover_timeout": 0.5}
        with pytest.raises(BrokerUnavailable, match=r"cannot reach the broker at sentinel://"):
            refused = transport_from_url(setup.url(), transport_options=quick, use_ssl=stranger)
            refused.publish("q", [b"never"])
    finally:
        setup.stop()
