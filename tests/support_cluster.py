"""A Redis Cluster and a Sentinel setup of the suite's own, for the cluster/sentinel tests.

Both start real redis-server processes on free ports in a temp dir and stop them by PID
(never a broad name); nothing here touches a Redis the suite did not start.

    RedisClusterNodes   three masters and one replica each (``--cluster-enabled yes``,
                        joined by ``redis-cli --cluster create --cluster-replicas 1``)
    SentinelSetup       one master, one replica, three ``redis-server --sentinel``
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path

import redis

from .support import free_port, wait_for


class NodeProcess:
    """One redis-server (data node or sentinel) of the suite's own, stopped by its PID."""

    def __init__(
        self,
        directory: Path,
        port: int,
        extra: list[str],
        sentinel_conf: str = "",
        client_tls: dict[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.port = port
        self.extra = extra
        self.sentinel_conf = sentinel_conf
        self.client_tls = client_tls  # ssl_* options when the node speaks TLS only
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.sentinel_conf:
            conf = self.directory / "sentinel.conf"
            if not conf.exists():  # a restarted sentinel keeps what it learnt
                conf.write_text(self.sentinel_conf)
            command = ["redis-server", str(conf), "--sentinel"]
        else:
            command = ["redis-server"]
        command += [
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._pings, 15, what=f"redis-server on port {self.port}")

    def client(self) -> redis.Redis:
        if self.client_tls is not None:
            return redis.Redis(port=self.port, socket_timeout=5, ssl=True, **self.client_tls)
        return redis.Redis(port=self.port, socket_timeout=5)

    def _pings(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


_DATA_NODE = ["--save", "", "--appendonly", "no"]


class RedisClusterNodes:
    """Three masters with one replica each, on free ports. With ``tls_dir`` (holding
    ca.pem, server.pem/.key and client.pem/.key) every node, the cluster bus and
    replication speak TLS only, and clients must show a certificate."""

    def __init__(
        self, directory: Path, masters: int = 3, replicas: int = 1, tls_dir: Path | None = None
    ) -> None:
        self.directory = directory
        self.tls_dir = tls_dir
        self.nodes: list[NodeProcess] = []
        for i in range(masters * (1 + replicas)):
            port = free_port()
            extra = [*self._tls_flags(port)] if tls_dir else []
            extra += [
                *_DATA_NODE,
                "--cluster-enabled", "yes",
                # The bus port is port + 10000 unless told: a free port of its own.
                "--cluster-port", str(free_port()),
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "2000",
                # A shard that lost its master and replica must not stop the others.
                "--cluster-require-full-coverage", "no",
            ]  # fmt: skip
            self.nodes.append(
                NodeProcess(directory / f"node-{i}", port, extra, client_tls=self.client_tls())
            )
        self.replicas = replicas

    def _tls_flags(self, port: int) -> list[str]:
        assert self.tls_dir is not None
        d = self.tls_dir
        return [
            "--port", "0", "--tls-port", str(port),
            "--tls-cluster", "yes", "--tls-replication", "yes",
            "--tls-cert-file", str(d / "server.pem"), "--tls-key-file", str(d / "server.key"),
            "--tls-ca-cert-file", str(d / "ca.pem"), "--tls-auth-clients", "yes",
        ]  # fmt: skip

    def client_tls(self) -> dict[str, str] | None:
        """ssl_* options of a client that trusts the test CA and shows its certificate."""
        if self.tls_dir is None:
            return None
        d = self.tls_dir
        return {
            "ssl_ca_certs": str(d / "ca.pem"),
            "ssl_certfile": str(d / "client.pem"),
            "ssl_keyfile": str(d / "client.key"),
        }

    def url(self, scheme: str = "redis+cluster") -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])
        return f"{scheme}://{hosts}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        tls = self.client_tls()
        cli_tls = (
            ["--tls", "--cacert", tls["ssl_ca_certs"], "--cert", tls["ssl_certfile"],
             "--key", tls["ssl_keyfile"]]
            if tls else []
        )  # fmt: skip
        subprocess.run(
            ["redis-cli", *cli_tls, "--cluster", "create", *addresses,
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        wait_for(self.healthy, 30, interval=0.2, what="cluster state ok")

    def healthy(self) -> bool:
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                info = node.client().execute_command("CLUSTER", "INFO")
            except redis.RedisError:
                return False
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True

    def masters(self) -> list[NodeProcess]:
        """The nodes that are masters right now (by their own ROLE)."""
        out = []
        for node in self.nodes:
            if node.alive:
                with contextlib.suppress(redis.RedisError):
                    if node.client().execute_command("ROLE")[0] == b"master":
                        out.append(node)
        return out

    def master_of(self, key: str) -> NodeProcess:
        """The node serving ``key``'s slot now."""
        client = self.masters()[0].client()
        slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise AssertionError(f"no master serves {key!r}")

    def flush(self) -> None:
        for node in self.masters():
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill(signal.SIGTERM)


class SlotMigration:
    """Moves one hash slot from the master serving it to another, the way
    ``redis-cli --cluster reshard`` does (SETSLOT IMPORTING/MIGRATING, MIGRATE the keys,
    SETSLOT NODE on every master), in steps a test can stop between: ``begin``, then
    ``move_keys`` (one MIGRATE a key, ``pause`` seconds apart, to keep the slot half
    moved for a while), then ``finish``."""

    def __init__(self, cluster: RedisClusterNodes, key: str) -> None:
        from redis.crc import key_slot

        self.cluster = cluster
        self.slot = key_slot(key.encode())
        self.source = cluster.master_of(key)
        self.target = next(n for n in cluster.masters() if n.port != self.source.port)
        self._source_id = self.source.client().execute_command("CLUSTER", "MYID").decode()
        self._target_id = self.target.client().execute_command("CLUSTER", "MYID").decode()
        self.begun = self.finished = False

    def begin(self) -> None:
        self.begun = True
        number, client = self.slot, self.target.client()
        client.execute_command("CLUSTER", "SETSLOT", number, "IMPORTING", self._source_id)
        client = self.source.client()
        client.execute_command("CLUSTER", "SETSLOT", number, "MIGRATING", self._target_id)

    def move_keys(self, pause: float = 0.0) -> int:
        """MIGRATE every key of the slot (those written meanwhile too); how many moved."""
        src, moved = self.source.client(), 0
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, 100)
            if not keys:
                return moved
            for key in keys:
                with contextlib.suppress(redis.ResponseError):  # gone meanwhile: NOKEY
                    src.execute_command(
                        "MIGRATE", "127.0.0.1", self.target.port, "", 0, 5000, "KEYS", key
                    )
                    moved += 1
                time.sleep(pause)

    def finish(self) -> None:
        for node in [self.target, self.source, *self.cluster.masters()]:
            node.client().execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", self._target_id)
        self.finished = True

    def complete(self) -> None:
        """Finish a move a test began (leave the cluster whole for the next test)."""
        if self.begun and not self.finished:
            self.move_keys()
            self.finish()

    def run(self, pause: float = 0.0) -> int:
        self.begin()
        moved = self.move_keys(pause)
        self.finish()
        return moved


class SentinelSetup:
    """One master, one replica and three sentinels watching them (quorum 2). With
    ``tls_dir`` (as for :class:`RedisClusterNodes`) every node and sentinel speaks TLS
    only (replication and the sentinels' own links too) and wants client certificates."""

    master_name = "conveyor-master"

    def __init__(self, directory: Path, tls_dir: Path | None = None) -> None:
        self.directory = directory
        self.tls_dir = tls_dir
        client_tls = self.client_tls()
        master_port = free_port()
        self.master = NodeProcess(
            directory / "master", master_port, [*_DATA_NODE, *self.tls_flags(master_port)],
            client_tls=client_tls,
        )  # fmt: skip
        replica_port = free_port()
        self.replica = NodeProcess(
            directory / "replica",
            replica_port,
            [*_DATA_NODE, *self.tls_flags(replica_port),
             "--replicaof", "127.0.0.1", str(master_port)],
            client_tls=client_tls,
        )  # fmt: skip
        conf = (
            f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {self.master_name} 1000\n"
            f"sentinel failover-timeout {self.master_name} 5000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n"
        )
        self.sentinels = []
        for i in range(3):
            port = free_port()
            self.sentinels.append(
                NodeProcess(
                    directory / f"sentinel-{i}", port, self.tls_flags(port),
                    sentinel_conf=conf, client_tls=client_tls,
                )
            )  # fmt: skip

    def tls_flags(self, port: int) -> list[str]:
        if self.tls_dir is None:
            return []
        d = self.tls_dir
        return [
            "--port", "0", "--tls-port", str(port), "--tls-replication", "yes",
            "--tls-cert-file", str(d / "server.pem"), "--tls-key-file", str(d / "server.key"),
            "--tls-ca-cert-file", str(d / "ca.pem"), "--tls-auth-clients", "yes",
        ]  # fmt: skip

    def client_tls(self) -> dict[str, str] | None:
        """ssl_* options of a client that trusts the test CA and shows its certificate."""
        if self.tls_dir is None:
            return None
        d = self.tls_dir
        return {
            "ssl_ca_certs": str(d / "ca.pem"),
            "ssl_certfile": str(d / "client.pem"),
            "ssl_keyfile": str(d / "client.key"),
        }

    @property
    def data_nodes(self) -> list[NodeProcess]:
        return [self.master, self.replica]

    def url(self, db: int = 0) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}/{db}" for s in self.sentinels)

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        wait_for(self._replica_synced, 20, interval=0.1, what="replica in sync")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_for(self._sentinels_agree, 30, interval=0.2, what="sentinels see the replica")

    def _replica_synced(self) -> bool:
        info = self.replica.client().info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            try:
                replicas = sentinel.client().execute_command(
                    "SENTINEL", "REPLICAS", self.master_name
                )
                others = sentinel.client().execute_command(
                    "SENTINEL", "SENTINELS", self.master_name
                )
            except redis.RedisError:
                return False
            if not replicas or len(others) < 2:
                return False
        return True

    def current_master_port(self) -> int:
        _host, port = (
            self.sentinels[0]
            .client()
            .execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        )
        return int(port)

    def current_master(self) -> NodeProcess:
        port = self.current_master_port()
        return next(n for n in self.data_nodes if n.port == port)

    def flush(self) -> None:
        master = self.current_master()
        master.client().flushall()
        master.client().execute_command("WAIT", 1, 2000)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.kill(signal.SIGTERM)


def failed_over(setup: SentinelSetup, old_port: int) -> bool:
    """True once the sentinels name a master other than ``old_port``."""
    try:
        return setup.current_master_port() != old_port
    except redis.RedisError:
        return False


def rejoin_as_replica(setup: SentinelSetup, node: NodeProcess) -> None:
    """Bring a killed master back as the new master's replica (what the sentinels do to
    it on their next look; told at start here so the test does not wait for them)."""
    master = setup.current_master_port()
    node.extra = [*_DATA_NODE, *setup.tls_flags(node.port), "--replicaof", "127.0.0.1", str(master)]
    node.start()
    wait_for(
        lambda: node.client().info("replication").get("master_link_status") == "up",
        30, interval=0.2, what="old master rejoined as a replica",
    )  # fmt: skip
