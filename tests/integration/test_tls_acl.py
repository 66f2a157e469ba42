"""Redis over TLS with certificate verification and a client certificate, as an ACL user
(Celery's ``broker_use_ssl`` and ``redis_backend_use_ssl``), against a redis-server this
test starts with ``--tls-port`` and an ACL file; every certificate is made here."""

from __future__ import annotations

import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.exceptions import BrokerUnavailable, ConfigurationError

from ..certs import issue
from ..support import free_port, wait_for

pytestmark = pytest.mark.redis

ACL = """\
user default off
user app on >app-pass ~conveyor:* &* +@all
user admin on >admin-pass ~* &* +@all
"""


@dataclass
class TLSRedis:
    port: int
    directory: Path  # ca.pem, client.pem, client.key, stranger-ca.pem

    def url(self, user: str = "app", password: str = "app-pass", scheme: str = "rediss") -> str:
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}/0"

    def tls(self, ca: str = "ca.pem") -> dict[str, Any]:
        return {
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
            "ssl_ca_certs": str(self.directory / ca),
            "ssl_certfile": str(self.directory / "client.pem"),
            "ssl_keyfile": str(self.directory / "client.key"),
        }


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TLSRedis]:
    ca = issue("conveyor test CA", ca=True)
    ca.write(tmp_path, "ca")
    issue("stranger CA", ca=True).write(tmp_path, "stranger-ca")
    issue("127.0.0.1", issuer=ca, ip="127.0.0.1").write(tmp_path, "server")
    issue("client", issuer=ca).write(tmp_path, "client")
    (tmp_path / "users.acl").write_text(ACL)
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(tmp_path / "server.pem"),
            "--tls-key-file", str(tmp_path / "server.key"),
            "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
            "--tls-auth-clients", "yes",
            "--aclfile", str(tmp_path / "users.acl"),
            "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = TLSRedis(port, tmp_path)
    admin = redis.Redis.from_url(server.url("admin", "admin-pass"), **server.tls())
    try:
        wait_for(lambda: _pings(admin), 10, what="redis-server with TLS")
        yield server
    finally:
        admin.close()
        process.terminate()
        process.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_round_trip_over_verified_tls_as_an_acl_user(
    tls_redis: TLSRedis, spawn_worker: Any
) -> None:
    # The broker on redis:// with broker_use_ssl (Celery turns TLS on for it), the
    # results on rediss:// with redis_backend_use_ssl, each on its own database.
    broker_url = tls_redis.url(scheme="redis")
    backend_url = tls_redis.url().replace("/0", "/1")
    env = {"TEST_TLS_DIR": str(tls_redis.directory), "TEST_BACKEND_URL": backend_url}
    spawn_worker("tests.apps.tls", broker_url, "-c", "1", env=env)
    app = Conveyor(
        "producer",
        broker=broker_url,
        backend=backend_url,
        broker_use_ssl=tls_redis.tls(),
        redis_backend_use_ssl=tls_redis.tls(),
        set_as_current=False,
    )
    assert app.send_task("tests.apps.tls.add", args=[20, 22]).get(timeout=10) == 42
    app.close()


def test_a_server_certificate_from_an_unknown_ca_is_refused(tls_redis: TLSRedis) -> None:
    app = Conveyor(
        "producer",
        broker=tls_redis.url(),
        broker_use_ssl=tls_redis.tls(ca="stranger-ca.pem"),
        set_as_current=False,
    )
    with pytest.raises(BrokerUnavailable) as caught:
        app.send_task("tests.apps.tls.add", args=[1, 2])
    message = str(caught.value)
    assert message.startswith(
        f"cannot reach the broker at rediss://app:***@127.0.0.1:{tls_redis.port}/0: "
    )
    assert "certificate verify failed" in message
    assert "\n" not in message
    app.close()


def test_a_wrong_acl_password_is_one_line(tls_redis: TLSRedis) -> None:
    app = Conveyor(
        "producer",
        broker=tls_redis.url(password="wrong"),
        broker_use_ssl=tls_redis.tls(),
        set_as_current=False,
    )
    with pytest.raises(BrokerUnavailable, match="invalid username-password pair") as caught:
        app.send_task("tests.apps.tls.add", args=[1, 2])
    assert "wrong" not in str(caught.value)
    app.close()


def test_tls_settings_conveyor_cannot_read_are_errors(tmp_path: Path) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("redis://127.0.0.1:1/0", {"ssl_cert_reqs": "sometimes"}, "ssl_cert_reqs 'sometimes'"),
        ("redis://127.0.0.1:1/0", {"cert_reqs": ssl.CERT_NONE}, "unknown option cert_reqs"),
        ("redis://127.0.0.1:1/0", "yes", "must be a dict of ssl_* options or True"),
        (
            f"sqlite:///{tmp_path / 'b.db'}",
            {"ssl_cert_reqs": "required"},
            "is not a Redis or AMQP URL",
        ),
    ]
    for url, use_ssl, error in cases:
        app = Conveyor("x", broker=url, broker_use_ssl=use_ssl, set_as_current=False)
        with pytest.raises(ConfigurationError, match=re.escape(error)):
            app.broker  # noqa: B018 - made on first use
        app.close()
