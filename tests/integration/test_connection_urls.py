"""The broker and backend URLs Redis users write: unix sockets, credentials, TLS.

Each test starts its own redis-server configured for the case, runs a real worker
against it through the URL, and makes a round trip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ..support import free_port, wait_for

TESTS = Path(__file__).parent.parent


def _start(directory: Path, *args: str) -> subprocess.Popen[bytes]:
    command = ["redis-server", "--save", "", "--appendonly", "no", "--dir", str(directory), *args]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _round_trip(url: str, tmp_path: Path) -> None:
    """Start a worker on ``url``, send a task through ``url``, get its result."""
    env = dict(os.environ, CONVEYOR_BROKER_URL=url)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), env.get("PYTHONPATH", "")])
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "-A",
            "tests.apps.basic",
            "worker",
            "-l",
            "info",
            "-c",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: b" ready." in (tmp_path / "worker.log").read_bytes(), 20, what="worker")
        script = (
            "from tests.apps.basic import add, app\n"
            f"app.conf.broker_url = {url!r}\n"
            "print(add.delay(20, 22).get(timeout=10))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "42", out.stderr + (tmp_path / "worker.log").read_text()
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(15)
        log.close()


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    socket_path = tmp_path / "redis.sock"
    process = _start(
        tmp_path,
        "--port",
        "0",
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--requirepass",
        "s3cret",
    )
    try:
        wait_for(socket_path.exists, 10, what="unix socket")
        client = redis.Redis(unix_socket_path=str(socket_path), password="s3cret")
        wait_for(lambda: client.ping(), 10, what="redis ping")
        client.execute_command("ACL", "SETUSER", "app", "on", ">apppass", "~*", "&*", "+@all")
        yield socket_path, "s3cret"
    finally:
        _stop(process)


def test_unix_socket_with_password(unix_redis: tuple[Path, str], tmp_path: Path) -> None:
    socket_path, password = unix_redis
    _round_trip(f"unix://:{password}@{socket_path}?db=0", tmp_path)


def test_username_and_password_in_url(unix_redis: tuple[Path, str], tmp_path: Path) -> None:
    socket_path, _ = unix_redis
    _round_trip(f"unix://app:apppass@{socket_path}?db=0", tmp_path)


def test_tls_with_rediss(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    process = _start(
        tmp_path,
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
        "--tls-auth-clients",
        "no",
    )
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
        client = redis.Redis.from_url(url)
        wait_for(lambda: _pings(client), 10, what="TLS redis")
        _round_trip(url, tmp_path)
    finally:
        _stop(process)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
