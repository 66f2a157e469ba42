"""Which Redis servers a URL names, and the transport options that shape how we use them.

Three shapes:

    redis://, rediss://, unix://      one server (redis-py parses the URL)
    sentinel://h1:26379;sentinel://h2:26379[/db]
                                      a master found through Sentinel, by the
                                      ``master_name`` transport option (as kombu reads it)
    redis+cluster://h1:7000,h2:7001   a Redis Cluster (see ``cluster.py``)

Sentinel follows kombu's reading of the URL: every ``sentinel://`` part names one
sentinel; a user and password in the URL are the *master's* credentials; the sentinels'
own credentials go in ``sentinel_kwargs``. Replication to the replica is asynchronous,
so ``wait_for_replicas`` (WAIT after each publish) is offered for those who can lose
nothing at a failover (docs/architecture.md, "Sentinel").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.sentinel import Sentinel, SentinelConnectionPool

from ...exceptions import ConfigurationError
from ..urls import CLUSTER_SCHEMES, REDIS_SCHEMES, SENTINEL_SCHEMES

__all__ = ["REDIS_SCHEMES", "RedisOptions", "is_cluster_url", "is_sentinel_url", "sentinel_pool"]

# redis-py's sentinel module is untyped; its two classes are called through these.
_SENTINEL: Any = Sentinel
_SENTINEL_POOL: Any = SentinelConnectionPool


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_sentinel_url(url: str) -> bool:
    return _scheme(url) in SENTINEL_SCHEMES


def is_cluster_url(url: str) -> bool:
    return _scheme(url) in CLUSTER_SCHEMES


@dataclass(frozen=True)
class RedisOptions:
    """What the transport options say to a Redis store.

    ``wait_for_replicas``: after each publish, WAIT until that many replicas hold it
    (0: do not wait; the publish returns once the master has it).
    ``wait_timeout_ms``: the longest such wait; a publish not confirmed in time raises.
    ``failover_timeout``: how long (s) producers and result waiters keep retrying a lost
    connection before the error reaches the caller (a Sentinel failover takes a few
    seconds: down-after-milliseconds plus the election)."""

    master_name: str | None = None
    sentinel_kwargs: Mapping[str, Any] = field(default_factory=dict)
    wait_for_replicas: int = 0
    wait_timeout_ms: int = 1000
    failover_timeout: float = 0.0

    @classmethod
    def read(cls, url: str, options: Mapping[str, Any] | None) -> RedisOptions:
        options = dict(options or {})
        master_name = options.get("master_name")
        if master_name is not None and not isinstance(master_name, str):
            raise ConfigurationError(
                f"transport option master_name must be a string, not {master_name!r}"
            )
        if is_sentinel_url(url):
            parse_sentinel_url(url)  # a URL it cannot read is an error here, at start
        if is_sentinel_url(url) and not master_name:
            raise ConfigurationError(
                "a sentinel:// URL needs the master's name: set "
                "broker_transport_options={'master_name': 'mymaster'} "
                "(result_backend_transport_options for the result backend)"
            )
        sentinel_kwargs = options.get("sentinel_kwargs") or {}
        if not isinstance(sentinel_kwargs, Mapping):
            raise ConfigurationError("transport option sentinel_kwargs must be a dict")
        replicas = _non_negative_int(options, "wait_for_replicas", 0)
        timeout = _non_negative_int(options, "wait_timeout_ms", 1000)
        default_failover = 30.0 if is_sentinel_url(url) or is_cluster_url(url) else 0.0
        failover = options.get("failover_timeout", default_failover)
        if not isinstance(failover, int | float) or failover < 0:
            raise ConfigurationError(
                f"transport option failover_timeout must be seconds >= 0, not {failover!r}"
            )
        return cls(master_name, dict(sentinel_kwargs), replicas, timeout, float(failover))


def _non_negative_int(options: Mapping[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"transport option {name} must be an integer >= 0, not {value!r}")
    return value


@dataclass(frozen=True)
class SentinelAddress:
    sentinels: list[tuple[str, int]]
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelAddress:
    """``sentinel://[user:pass@]h1:26379[/db];sentinel://h2:26379`` (kombu's form)."""
    sentinels: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for part in filter(None, (p.strip() for p in url.split(";"))):
        split = urlsplit(part)
        if split.scheme.lower() not in SENTINEL_SCHEMES or not split.hostname:
            raise ConfigurationError(
                f"cannot read sentinel URL part {_masked(part)!r}: expected sentinel://host:port"
            )
        try:
            port = split.port or 26379
        except ValueError as exc:
            raise ConfigurationError(f"bad port in sentinel URL part {_masked(part)!r}") from exc
        sentinels.append((split.hostname, port))
        if split.password is not None and password is None:
            username = unquote(split.username) if split.username else None
            password = unquote(split.password)
        path = split.path.strip("/")
        if path:
            if not path.isdigit():
                raise ConfigurationError(f"the database in {_masked(part)!r} must be a number")
            db = int(path)
    if not sentinels:
        raise ConfigurationError("a sentinel:// URL names no sentinel")
    return SentinelAddress(sentinels, db, username, password)


def sentinel_pool(url: str, options: RedisOptions, **connection: Any) -> SentinelConnectionPool:
    """A pool whose connections ask the sentinels for the master on every (re)connect,
    so a failover is followed by reconnecting."""
    address = parse_sentinel_url(url)
    assert options.master_name is not None  # RedisOptions.read refuses a sentinel URL without it
    manager = _SENTINEL(address.sentinels, sentinel_kwargs=dict(options.sentinel_kwargs))
    if address.password is not None:
        connection.setdefault("password", address.password)
        if address.username:
            connection.setdefault("username", address.username)
    pool: SentinelConnectionPool = _SENTINEL_POOL(
        options.master_name, manager, db=address.db, check_connection=False, **connection
    )
    return pool


def _masked(part: str) -> str:
    split = urlsplit(part)
    if split.password is None:
        return part
    return part.replace(f":{split.password}@", ":***@", 1)
