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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.connection import Connection, ConnectionPool, SSLConnection
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from ...exceptions import ConfigurationError
from ..urls import masked
from .connection import (
    CONNECTION_ERRORS,
    SCRIPT_KEY_MOVING,
    SSL_OPTIONS,
    Command,
    Redirected,
    RedisLink,
    RedisUnavailable,
    Script,
    _mapped,
    _reason,
    failover_retry,
    is_redirect,
    logger,
    ssl_options,
    unavailable,
)
from .topology import RedisOptions

__all__ = ["ClusterAddress", "ClusterRouter", "SlotLink", "cluster_client", "parse_cluster_url"]

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


# What a cluster that cannot serve a command now raises through redis-py, once redis-py's
# own retries are spent: no node answers; a shard has no master (CLUSTERDOWN); no node
# covers the slot; redirections went on past its limit (a ClusterError "TTL exhausted");
# a slot that stayed half moved (TRYAGAIN, ASK/MOVED left in a pipeline's replies).
# (The replies among these are caught as ResponseError and told apart by is_redirect.)
_CLUSTER_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    ClusterError,
    SlotNotCoveredError,
)


@contextlib.contextmanager
def cluster_errors_mapped(url: str) -> Iterator[None]:
    """The one place a Redis Cluster's unavailability becomes :class:`RedisUnavailable`
    (a BrokerUnavailable) for the cold path: single commands, scripts and pipelines of
    redis-py's cluster client. (The raw links map theirs in ``RedisLink``/``SlotLink``.)"""
    try:
        yield
    except RedisUnavailable:
        raise
    except ResponseError as exc:
        if not is_redirect(exc):
            raise  # a command's own error (WRONGTYPE, a script's error): not unavailability
        raise _unreachable(url, exc) from exc
    except _CLUSTER_UNAVAILABLE as exc:
        raise _unreachable(url, exc) from exc
    except RedisClusterException as exc:
        # Also a usage error's class (keys of several slots in one command): only the
        # one caused by no node answering ("Redis Cluster cannot be connected") is ours.
        if not isinstance(exc.__cause__, CONNECTION_ERRORS):
            raise
        raise _unreachable(url, exc.__cause__) from exc


def _unreachable(url: str, exc: BaseException) -> RedisUnavailable:
    return RedisUnavailable(f"cannot reach the Redis Cluster at {url}: {_reason(exc)}", url=url)


def _slot_unsettled(exc: Exception) -> bool:
    """A slot half moved: redis-py gave up on TRYAGAIN after its few tries ("TTL
    exhausted"), or a script was stopped at a key of that slot (SCRIPT_KEY_MOVING)."""
    if isinstance(exc, ClusterDownError):
        return False  # redis-py's retry already waited the election out
    if isinstance(exc, TryAgainError) or str(exc).startswith(SCRIPT_KEY_MOVING):
        return True
    return isinstance(exc, ClusterError) and "TTL exhausted" in str(exc)


class _MappedCluster(RedisCluster):
    """redis-py's cluster client whose commands wait out a slot migration (for up to
    ``failover_timeout``) and report a cluster that stays out of reach (after redis-py's
    own retries through a failover) as RedisUnavailable, the one connection error the
    worker's loop, keeper and the CLI handle. Its pipelines report it the same way."""

    conveyor_url = ""
    conveyor_failover_timeout = 30.0

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        parent: Any = super()
        deadline = time.monotonic() + self.conveyor_failover_timeout
        with cluster_errors_mapped(self.conveyor_url):
            while True:
                try:
                    return parent.execute_command(*args, **kwargs)
                except (ClusterError, ResponseError) as exc:
                    if not _slot_unsettled(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(_FOLLOW_PAUSE / 2)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        parent: Any = super()  # redis-py leaves this one untyped
        pipe = parent.pipeline(transaction, shard_hint)
        # redis-py builds its pipeline from a dozen of the client's private fields: we take
        # its object and only give it our class, which adds no state, just the mapping.
        pipe.__class__ = _MappedClusterPipeline
        pipe.conveyor_url = self.conveyor_url
        return pipe


class _MappedClusterPipeline(ClusterPipeline):
    conveyor_url = ""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with cluster_errors_mapped(self.conveyor_url):
            result: list[Any] = super().execute(raise_on_error)
            return result


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
    client.conveyor_failover_timeout = options.failover_timeout
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
        return self.pool_at(node.host, node.port)

    def pool_at(self, host: str, port: int) -> ConnectionPool:
        with self._lock:
            pool = self._pools.get(f"{host}:{port}")
            if pool is None:
                kwargs = dict(self._kwargs)
                kwargs["connection_class"] = _mapped_class(self._url, kwargs.pop("ssl", False))
                pool = ConnectionPool(host=host, port=port, **kwargs)
                self._pools[f"{host}:{port}"] = pool
            return pool

    def refresh(self) -> None:
        """Read the slot map again (after MOVED, or a node that went away)."""
        with contextlib.suppress(redis.RedisError, RedisClusterException, OSError):
            # No node may answer yet (an election): the caller tries again after a pause.
            self.client.nodes_manager.initialize()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.disconnect()
        self.client.close()


class SlotLink(RedisLink):
    """A :class:`RedisLink` to the node serving ``key``'s slot, following the slot when
    it moves (resharding: MOVED/ASK) or its node dies (failover: a replica takes over).
    Every key a command through it touches must be in that slot.

    Each command is followed on its own, so a pipelined batch half of which ran before
    its slot moved is not run twice: MOVED re-reads the slot map and moves the link;
    ASK (the slot is being migrated and the key is already on the importing node) runs
    that command once there, after ASKING; TRYAGAIN (a multi-key command while its keys
    are split between the two nodes), CLUSTERDOWN and a script stopped at a key that is
    half moved are tried again after a pause. A node that stays away, or a slot that
    does not settle, for ``failover_timeout`` seconds is RedisUnavailable."""

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
        # Links to nodes that answered for this slot during a migration (ASK), by address.
        self._importing: dict[tuple[str, int], RedisLink] = {}

    def _relocate(self) -> None:
        self._router.refresh()
        pool = self._router.pool_for(self._key)
        if pool is not self._pool:
            self.move_to(pool)

    def _run(self, commands: Sequence[Command]) -> tuple[list[Any], set[RedisLink]]:
        """The replies to ``commands``, an error reply in its command's place, each
        command followed to the node serving its slot; also the importing nodes' links
        that ran some of them (ASK)."""
        deadline = time.monotonic() + self._timeout
        replies: list[Any] = [None] * len(commands)
        asked: set[RedisLink] = set()
        todo = list(range(len(commands)))
        while True:
            try:
                got = RedisLink.exchange(self, [commands[i] for i in todo])
            except Redirected as exc:
                # Write-behind commands (acks) sent before these went to a node that no
                # longer serves their slot: follow them first, then send ours.
                self._settle(exc.commands)
                continue
            except CONNECTION_ERRORS:
                if self._report or time.monotonic() > deadline:
                    self._relocate()
                    raise
                time.sleep(_FOLLOW_PAUSE)
                self._relocate()
                continue
            again: list[int] = []
            for i, reply in zip(todo, got, strict=True):
                if isinstance(reply, AskError) and not isinstance(reply, MovedError):
                    reply = self._ask(reply, commands[i], asked)
                replies[i] = reply
                if isinstance(reply, ResponseError) and is_redirect(reply):
                    again.append(i)
            if not again or time.monotonic() > deadline:
                return replies, asked
            if not any(isinstance(replies[i], MovedError) for i in again):
                # TRYAGAIN/CLUSTERDOWN: a migration or an election is under way.
                time.sleep(_FOLLOW_PAUSE / 10)
            self._relocate()
            todo = again

    def _ask(self, asked: AskError, command: Command, used: set[RedisLink]) -> Any:
        """``command``'s reply from the node importing its slot: ASKING lets it serve the
        next command for a slot it does not own yet."""
        link = self._importing.get(asked.node_addr)
        if link is None:
            link = RedisLink(self._router.pool_at(asked.host, asked.port), self._scripts)
            self._importing[asked.node_addr] = link
        try:
            reply = link.exchange([("ASKING",), command])[1]
        except CONNECTION_ERRORS as exc:
            link.reset()  # the migration's target went away: ask the slot's owner again
            return TryAgainError(f"the node importing slot {asked.slot_id} is away: {exc}")
        used.add(link)
        return reply

    def _settle(self, commands: Sequence[Command]) -> None:
        """Follow write-behind commands a node redirected; their error replies are
        logged, as :meth:`RedisLink.drain` logs them."""
        replies, _ = self._run(commands)
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, ResponseError):
                logger.error("redis refused %s: %s", command[0], reply)

    def _raised(self, replies: list[Any]) -> list[Any]:
        for reply in replies:
            if isinstance(reply, ResponseError):
                if is_redirect(reply):  # the slot did not settle within failover_timeout
                    raise unavailable(reply, self._pool) from reply
                raise reply
        return replies

    def send(self, commands: Sequence[Command]) -> None:
        try:
            RedisLink.send(self, commands)
        except CONNECTION_ERRORS:
            # They are kept as unconfirmed: reconnecting (to the slot's node now) sends them.
            self._run(())

    def drain(self) -> None:
        self._run(())

    def call(self, command: Command) -> Any:
        return self._raised(self._run((command,))[0])[0]

    def call_all(self, commands: Sequence[Command]) -> list[Any]:
        return self._raised(self._run(commands)[0])

    def call_replicated(self, commands: Sequence[Command], replicas: int, timeout_ms: int) -> int:
        """WAIT on every node that ran some of ``commands`` (the slot's owner, and the
        node importing it if a migration sent some there): the fewest replicas count."""
        wait = ("WAIT", replicas, timeout_ms)
        replies, asked = self._run([*commands, wait])
        acked = int(self._raised(replies)[-1])
        for link in asked:
            acked = min(acked, int(link.call(wait)))
        return acked

    def close(self) -> None:
        for link in self._importing.values():
            link.reset()
        super().close()
