"""A RabbitMQ node of the suite's own: free ports, its own node name, epmd, cookie and
data directory in a temp dir, stopped by its process group.

It never touches a node it did not start (a RabbitMQ on 5672 may be running on the
machine): the AMQP port, the distribution port and the epmd port are all free ports
picked here, HOME (where the Erlang cookie lives) is the temp dir, and every command
names this node with ``-n``.

Startup is the cost of one Erlang boot (~2-4 s on this machine): the management plugin
and every other plugin are off, and readiness is the AMQP port answering rather than
``rabbitmqctl await_startup`` (that boots a second Erlang VM just to ask).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from contextlib import suppress
from pathlib import Path

from .support import free_port


# What docs/architecture.md tells an operator of RabbitMQ < 3.11.15 to set, where a
# consumer cannot carry its own x-consumer-timeout: no delivery-acknowledgement timeout,
# so a 3-hour task on a live worker is never redelivered (the worker's death is seen by
# the closed connection and its heartbeat, not by a timer). A node made with
# ``consumer_timeout_ms`` has that timeout instead (to show what it does). Channels
# check the timeout every ``channel_tick_interval`` (60 s by default): 200 ms here, so a
# test sees in a second what a timeout would do.
def advanced_config(consumer_timeout_ms: int | None) -> str:
    timeout = "undefined" if consumer_timeout_ms is None else str(consumer_timeout_ms)
    return f"[{{rabbit, [{{consumer_timeout, {timeout}}}, {{channel_tick_interval, 200}}]}}].\n"


VHOSTS = 40  # one per test that asks (``vhost_url()``), made at boot with the definitions


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(vhosts: int) -> dict[str, object]:
    """The guest user and ``vhosts`` vhosts it may use, loaded at boot: a fresh vhost per
    test costs nothing, where ``rabbitmqctl add_vhost`` boots a second Erlang VM (~2 s)."""
    names = ["/", *(f"test-{i}" for i in range(vhosts))]
    return {
        "users": [
            {
                "name": "guest",
                "password_hash": password_hash("guest"),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": ["administrator"],
            }
        ],
        "vhosts": [{"name": name} for name in names],
        "permissions": [
            {"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"}
            for name in names
        ],
    }


def rabbitmq_script(name: str) -> str:
    """The path of RabbitMQ's own ``name`` script. Debian's /usr/sbin entries are a
    wrapper that re-runs the script as the ``rabbitmq`` user (who cannot read our temp
    dir) and refuses other users: run the script it wraps, beside it, as ourselves."""
    found = shutil.which(name) or name
    real = Path(found).resolve()
    if real.name == "rabbitmq-script-wrapper" and (real.parent / name).exists():
        return str(real.parent / name)
    return found


def amqp_answers(port: int) -> bool:
    """True when the node's AMQP listener accepts a protocol header and replies."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return bool(sock.recv(1))
    except OSError:
        return False


def _accepts(port: int) -> bool:
    """True when something accepts TCP connections on ``port`` (the TLS listener)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RabbitNode:
    """``rabbitmq-server`` on free ports; ``url`` is the amqp:// URL of its default vhost."""

    def __init__(
        self,
        directory: Path,
        *,
        consumer_timeout_ms: int | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        """``tls_dir`` (ca.pem, server.pem, server.key) adds a TLS listener on
        ``tls_port`` that asks clients for a certificate signed by that CA."""
        self.directory = directory
        self.consumer_timeout_ms = consumer_timeout_ms
        self.tls_dir = tls_dir
        self.tls_port = free_port() if tls_dir is not None else 0
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.name = f"conveyor-test-{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self._next_vhost = 0
        self._write_config()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def tls_url(self) -> str:
        return f"amqps://guest:guest@127.0.0.1:{self.tls_port}//"

    def _write_config(self) -> None:
        for name in ("home", "mnesia", "log"):
            (self.directory / name).mkdir(exist_ok=True)
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = warning\n"
            "vm_memory_high_watermark.relative = 0.8\n"
            "disk_free_limit.absolute = 1MB\n"
            f"load_definitions = {self.directory / 'definitions.json'}\n"
        )
        if self.tls_dir is not None:
            with (self.directory / "rabbitmq.conf").open("a") as conf:
                conf.write(
                    f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
                    f"ssl_options.cacertfile = {self.tls_dir / 'ca.pem'}\n"
                    f"ssl_options.certfile = {self.tls_dir / 'server.pem'}\n"
                    f"ssl_options.keyfile = {self.tls_dir / 'server.key'}\n"
                    "ssl_options.verify = verify_peer\n"
                    "ssl_options.fail_if_no_peer_cert = true\n"
                )
        (self.directory / "definitions.json").write_text(json.dumps(definitions(VHOSTS)))
        (self.directory / "advanced.config").write_text(advanced_config(self.consumer_timeout_ms))
        (self.directory / "enabled_plugins").write_text("[].\n")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        directory = self.directory
        env.update(
            HOME=str(directory / "home"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_CRASH_DUMP=str(directory / "erl_crash.dump"),
            RABBITMQ_CONFIG_FILE=str(directory / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(directory / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(directory / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(directory / "mnesia"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(directory / "mnesia" / "feature_flags"),
            RABBITMQ_LOG_BASE=str(directory / "log"),
            RABBITMQ_PID_FILE=str(directory / "rabbitmq.pid"),
            RABBITMQ_CONF_ENV_FILE=str(directory / "rabbitmq-env.conf"),
            RABBITMQ_LOGS=str(directory / "log" / "rabbit.log"),
        )
        return env

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.directory / "server.out", "ab")  # noqa: SIM115 - child owns it
        self.process = subprocess.Popen(
            [rabbitmq_script("rabbitmq-server")],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not amqp_answers(self.port) or (self.tls_port and not _accepts(self.tls_port)):
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"rabbitmq-server did not start in {timeout}s: {self.tail()}")
            time.sleep(0.05)

    def vhost_url(self) -> str:
        """The URL of a vhost no test used before (the pool made at boot, then new ones
        made with rabbitmqctl)."""
        index = self._next_vhost
        self._next_vhost += 1
        if index < VHOSTS:
            return f"amqp://guest:guest@127.0.0.1:{self.port}/test-{index}"
        name = f"test-{index}"
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    def tail(self) -> str:
        text = ""
        for path in (self.directory / "server.out", self.directory / "log" / "rabbit.log"):
            with suppress(OSError):
                text += path.read_text(errors="replace")[-2000:]
        return text

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n NODE ...`` against this node only."""
        done = subprocess.run(
            [rabbitmq_script("rabbitmqctl"), "-n", self.name, *args],
            env=self.environment(),
            capture_output=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout.decode()

    def stop(self) -> None:
        """Graceful stop: SIGTERM to the node's process group (the script forwards it
        to the Erlang VM, which stops RabbitMQ cleanly), SIGKILL if it hangs."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """A crash: SIGKILL to every process of the node."""
        process = self.process
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def restart(self, down_for: float = 0.0, crash: bool = False) -> None:
        self.kill() if crash else self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop the node and the epmd it started (epmd daemonizes, so it left the
        node's process group: it is stopped by its own port, which only it uses)."""
        self.stop()
        epmd = shutil.which("epmd")
        if epmd is not None:
            with suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [epmd, "-port", str(self.epmd_port), "-kill"],
                    capture_output=True,
                    timeout=10,
                    check=False,
                )
