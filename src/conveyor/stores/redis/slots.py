"""Redis Cluster plumbing: the URL, redis-py's cluster client, and raw links that follow
a slot from node to node.

``redis+cluster://[user:password@]h1:7000,h2:7001`` (``rediss+cluster://`` for TLS) names
some nodes of a cluster; the others are discovered. The non-hot path uses redis-py's
``RedisCluster``, which follows MOVED/ASK and refreshes its slot map after a failover.
The hot path (publish, fetch, ack) keeps conveyor's raw :class:`RedisLink` (about half
the cost of a redis-py call, docs/benchmarks.md): a :class:`SlotLink` is a RedisLink to the
node serving one slot, which re-reads the slot map and moves when that node answers
MOVED/ASK/TRYAGAIN/CLUSTERDOWN or goes away, for up to ``failover_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection, ConnectionPool, SSLConnection
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, RedisClusterException, ResponseError

from ...exceptions import ConfigurationError
from ..urls import masked
from .connection import (
    CONNECTION_ERRORS,
    SSL_OPTIONS,
    Command,
    Redirected,
    RedisLink,
    RedisUnavailable,
    Script,
    _mapped,
    failover_retry,
    is_redirect,
    ssl_options,
)
from .topology import RedisOptions

__all__ = ["ClusterAddress", "ClusterRouter", "SlotLink", "cluster_client", "parse_cluster_url"]

T = TypeVar("T")

# redis-py's ClusterNode is untyped; called through this.
_CLUSTER_NODE: Any = ClusterNode

# Between two looks at the slot map while a shard fails over.
_FOLLOW_PAUSE = 0.1


@dataclass(frozen=True)
class ClusterAddress:
    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    tls: bool
    query: dict[str, str]


def parse_cluster_url(url: str) -> ClusterAddress:
    """``redis+cluster://[user:pass@]h1:7000,h2:7001[/0][?ssl_cert_reqs=...]``."""
    scheme, _, rest = url.partition("://")
    tls = scheme.lower() == "rediss+cluster"
    split = urlsplit(f"x://{rest}")
    credentials, _, hosts = split.netloc.rpartition("@")
    username = password = None
    if credentials:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes: list[tuple[str, int]] = []
    for host in filter(None, hosts.split(",")):
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ConfigurationError(
                f"cannot read cluster node {host!r} in a {scheme}:// URL: expected host:port"
            )
        nodes.append((name.strip("[]"), int(port)))
    if not nodes:
        raise ConfigurationError(f"a {scheme}:// URL names no node: expected {scheme}://h1:7000")
    if split.path.strip("/") not in ("", "0"):
        raise ConfigurationError("a Redis Cluster has only database 0")
    query = {k: v[-1] for k, v in parse_qs(split.query).items()}
    return ClusterAddress(nodes, username, password, tls, query)


def _connection_kwargs(
    address: ClusterAddress, tls: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Connection options for every node: credentials from the URL; TLS for
    ``rediss+cluster://`` or when ``tls`` (read by ``ssl_options`` from
    ``broker_use_ssl``/``redis_backend_use_ssl``) is given, its options from there or
    from the URL's query (``?ssl_cert_reqs=none``), as redis-py reads ``rediss://``."""
    kwargs: dict[str, Any] = {"socket_keepalive": True, "health_check_interval": 10}
    if address.username:
        kwargs["username"] = address.username
    if address.password is not None:
        kwargs["password"] = address.password
    if address.tls or tls is not None:
        kwargs["ssl"] = True
        from_query = {k: v for k, v in address.query.items() if k in SSL_OPTIONS}
        kwargs.update(ssl_options(from_query, "the URL") or {} if from_query else {})
        kwargs.update(tls or {})
    return kwargs


def _mapped_class(url: str, tls: bool) -> type[Any]:
    """Connections whose errors are RedisUnavailable (a BrokerUnavailable), as on one
    Redis, so the worker's loop and keeper see the one error class they handle."""
    return _mapped(SSLConnection if tls else Connection, url, "the Redis Cluster")


class _MappedCluster(RedisCluster):
    """redis-py's cluster client whose commands report a cluster that stays out of reach
    (after its own retries through a failover) as RedisUnavailable, the one connection
    error the worker's loop, keeper and the CLI handle."""

    conveyor_url = ""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        parent: Any = super()
        try:
            return parent.execute_command(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, ClusterDownError) as exc:
            if isinstance(exc, RedisUnavailable):
                raise
            raise RedisUnavailable(
                f"cannot reach the Redis Cluster at {self.conveyor_url}: {exc}",
                url=self.conveyor_url,
            ) from exc


def cluster_client(
    url: str, options: RedisOptions, tls: Mapping[str, Any] | None = None
) -> RedisCluster:
    """redis-py's cluster client for ``url``; it follows MOVED/ASK and, after a node
    failed, re-reads the slot map (for up to ``failover_timeout`` seconds of retries)."""
    address = parse_cluster_url(url)
    kwargs = _connection_kwargs(address, tls)
    try:
        client: _MappedCluster = _MappedCluster(
            startup_nodes=[_CLUSTER_NODE(host, port) for host, port in address.nodes],
            retry=failover_retry(max(options.failover_timeout, 1.0)),
            **kwargs,
        )
    except (RedisClusterException, redis.RedisError, OSError) as exc:
        # redis-py reads the slot map at once: no node answered (or refused the login).
        reason = str(exc).rpartition(": ")[2].rstrip(".") or type(exc).__name__
        raise RedisUnavailable(
            f"cannot reach the Redis Cluster at {masked(url)}: {reason}", url=masked(url)
        ) from exc
    client.conveyor_url = masked(url)
    return client


class ClusterRouter:
    """Which node serves a slot now, and one connection pool per node for raw links."""

    def __init__(
        self, client: RedisCluster, url: str, tls: Mapping[str, Any] | None = None
    ) -> None:
        self.client = client
        self._url = url
        self._kwargs = _connection_kwargs(parse_cluster_url(url), tls)
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.Lock()

    def pool_for(self, key: str) -> ConnectionPool:
        node = self.client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
        with self._lock:
            pool = self._pools.get(node.name)
            if pool is None:
                kwargs = dict(self._kwargs)
                kwargs["connection_class"] = _mapped_class(self._url, kwargs.pop("ssl", False))
                pool = ConnectionPool(host=node.host, port=node.port, **kwargs)
                self._pools[node.name] = pool
            return pool

    def refresh(self) -> None:
        """Read the slot map again (after MOVED, or a node that went away)."""
        with contextlib.suppress(redis.RedisError, OSError):
            # No node may answer yet (an election): the caller tries again after a pause.
            self.client.nodes_manager.initialize()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.disconnect()
        self.client.close()


class SlotLink(RedisLink):
    """A :class:`RedisLink` to the node serving ``key``'s slot, following the slot when
    it moves (resharding: MOVED/ASK) or its node dies (failover: a replica takes over).
    Every key a command through it touches must be in that slot."""

    def __init__(
        self,
        router: ClusterRouter,
        key: str,
        scripts: Sequence[Script],
        failover_timeout: float,
        *,
        report_lost_connections: bool = False,
    ) -> None:
        """``report_lost_connections``: raise a lost connection (after pointing at the
        slot's node again) instead of riding it out; a consumer wants that, so that its
        loop gives back the leases whose fetch or ack replies were lost with it
        (``recover``), as it does on one Redis. A producer rides it out."""
        super().__init__(router.pool_for(key), scripts)
        self._router = router
        self._key = key
        self._timeout = failover_timeout
        self._report = report_lost_connections

    def _follow(self, step: Callable[[], T]) -> T:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return step()
            except Redirected as exc:
                self._relocate()
                RedisLink.send(self, exc.commands)  # the acks that went to the old node
                continue
            except ResponseError as exc:
                if not is_redirect(exc) or time.monotonic() > deadline:
                    raise
                # MOVED: the new map answers at once. ASK/TRYAGAIN (a slot half moved):
                # wait the migration out; redis-py's client follows ASK on the cold path.
                time.sleep(_FOLLOW_PAUSE / 10)
            except CONNECTION_ERRORS:
                if self._report or time.monotonic() > deadline:
                    self._relocate()
                    raise
                time.sleep(_FOLLOW_PAUSE)
            self._relocate()

    def _relocate(self) -> None:
        self._router.refresh()
        pool = self._router.pool_for(self._key)
        if pool is not self._pool:
            self.move_to(pool)

    def send(self, commands: Sequence[Command]) -> None:
        try:
            RedisLink.send(self, commands)
        except CONNECTION_ERRORS:
            # They are kept as unconfirmed: reconnecting (to the slot's node now) sends them.
            self._follow(lambda: RedisLink.drain(self))

    def drain(self) -> None:
        self._follow(lambda: RedisLink.drain(self))

    def call(self, command: Command) -> Any:
        return self._follow(lambda: RedisLink.call(self, command))

    def call_all(self, commands: Sequence[Command]) -> list[Any]:
        return self._follow(lambda: RedisLink.call_all(self, commands))
