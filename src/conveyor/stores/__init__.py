"""Stores: where messages, results and shared worker state live, chosen by URL scheme.

Each store is a package (``redis/``, ``sqlite/``, ``memory/``) holding its transport,
its result backend and its coordinator side by side; the interfaces they implement are
``transport.py``, ``coordination.py`` and ``results.py`` beside this file.

    transport_from_url     broker_url        moves messages
    coordinator_from_url   coordinator_url   shared worker state (default: the broker's store)
    backend_from_url       result_backend    results and states

Another transport plugs in by scheme with :func:`register_transport`; one that keeps no
coordination state (AMQP) pairs with a coordinator on another store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..exceptions import ConfigurationError
from .coordination import CoordinatingStore, Coordinator, DeadLetter, Revocations
from .results import ResultBackend, ResultMeta, decode_meta, encode_meta
from .transport import (
    Delivery,
    LeasedDeliveries,
    QueueStats,
    ResultWrite,
    Transport,
    TransportConsumer,
    require_leases,
)
from .urls import CLUSTER_SCHEMES, REDIS_SCHEMES, masked

__all__ = [
    "CoordinatingStore",
    "Coordinator",
    "DeadLetter",
    "Delivery",
    "LeasedDeliveries",
    "QueueStats",
    "ResultBackend",
    "ResultMeta",
    "ResultWrite",
    "Revocations",
    "Transport",
    "TransportConsumer",
    "backend_from_url",
    "check_backend_url",
    "coordinator_for",
    "coordinator_from_url",
    "decode_meta",
    "encode_meta",
    "register_transport",
    "require_leases",
    "transport_from_url",
]

TransportFactory = Callable[..., Transport]
_plugins: dict[str, TransportFactory] = {}


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def register_transport(scheme: str, factory: TransportFactory) -> None:
    """Make ``scheme://`` URLs build their transport with ``factory(url, **options)``."""
    _plugins[scheme.lower()] = factory


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def transport_from_url(url: str, **options: Any) -> Transport:
    scheme = _scheme(url)
    if scheme in CLUSTER_SCHEMES:
        from .redis.cluster import RedisClusterTransport

        return RedisClusterTransport(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            transport_options=options.get("transport_options"),
            use_ssl=options.get("use_ssl"),
        )
    if scheme in REDIS_SCHEMES:
        from .redis.transport import RedisTransport

        return RedisTransport(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            transport_options=options.get("transport_options"),
            use_ssl=options.get("use_ssl"),
        )
    if scheme in AMQP_SCHEMES:
        from .rabbitmq.transport import AmqpTransport

        options.pop("key_prefix", None)
        return AmqpTransport(url, **options)
    _no_tls(url, options.get("use_ssl"), "broker_use_ssl")
    if scheme == "sqlite":
        from .sqlite.transport import SQLiteTransport

        return SQLiteTransport(url)
    if scheme == "memory":
        from .memory.transport import MemoryTransport

        return MemoryTransport(url)
    if scheme in _plugins:
        return _plugins[scheme](url, **options)
    raise ConfigurationError(
        f"unsupported broker URL {masked(url)!r}: expected redis://, rediss://, unix://, "
        "sentinel://, redis+cluster://, "
        "amqp://, amqps://, pyamqp://, sqlite:///path or memory://"
    )


def _no_tls(url: str, use_ssl: Any, setting: str) -> None:
    # A TLS setting for a store that has no network connection is a mistake to say.
    if use_ssl:
        raise ConfigurationError(
            f"{setting} is set, but {masked(url)!r} is not a Redis or AMQP URL"
        )


BACKEND_SCHEMES = frozenset({*REDIS_SCHEMES, *CLUSTER_SCHEMES, "sqlite", "memory", "cache+memory"})


def check_backend_url(url: str) -> None:
    """Refuse a result backend conveyor does not have, when the app first sends (and
    when a worker starts), not at the first ``.get()``: Celery's ``rpc://``,
    ``db+postgresql://``, ``django-db`` and the like."""
    if _scheme(url) not in BACKEND_SCHEMES:
        raise ConfigurationError(_unsupported_backend(url))


def _unsupported_backend(url: str) -> str:
    return (
        f"unsupported result backend {masked(url)!r}: expected redis://, rediss://, "
        "unix://, sentinel://, redis+cluster://, sqlite:///path or memory:// (conveyor has "
        "no rpc://, database, Django or cache backends)"
    )


def coordinator_from_url(url: str, **options: Any) -> Coordinator:
    """A coordinator standing apart from any transport (``coordinator_url``)."""
    scheme = _scheme(url)
    if scheme in CLUSTER_SCHEMES:
        from .redis.cluster_coordination import RedisClusterCoordinator

        return RedisClusterCoordinator.from_url(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            transport_options=options.get("transport_options"),
            use_ssl=options.get("use_ssl"),
        )
    if scheme in REDIS_SCHEMES:
        from .redis.coordination import RedisCoordinator

        return RedisCoordinator(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            transport_options=options.get("transport_options"),
        )
    if scheme == "sqlite":
        from .sqlite.coordination import SQLiteCoordinator

        return SQLiteCoordinator(url)
    if scheme == "memory":
        from .memory.coordination import MemoryCoordinator

        return MemoryCoordinator(url)
    raise ConfigurationError(
        f"unsupported coordinator URL {masked(url)!r}: expected redis://, rediss://, "
        "unix://, sentinel://, redis+cluster://, sqlite:///path or memory://"
    )


def coordinator_for(transport: Transport) -> Coordinator:
    """The coordinator in ``transport``'s own store (the default), or a
    ConfigurationError when that store keeps no coordination state."""
    if isinstance(transport, CoordinatingStore):
        return transport.coordination()
    raise ConfigurationError(
        f"the broker {masked(transport.url)} only moves messages: set coordinator_url to "
        "a redis:// or sqlite:/// URL to hold leases, rate limits, revocations and the "
        "worker registry"
    )


def backend_from_url(url: str, **options: Any) -> ResultBackend:
    scheme = _scheme(url)
    expires = options.get("expires", 86400.0)
    if scheme in CLUSTER_SCHEMES:
        from .redis.cluster_results import RedisClusterBackend

        return RedisClusterBackend(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            expires=expires,
            transport_options=options.get("transport_options"),
            use_ssl=options.get("use_ssl"),
        )
    if scheme in REDIS_SCHEMES:
        from .redis.results import RedisBackend

        return RedisBackend(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            expires=expires,
            transport_options=options.get("transport_options"),
            use_ssl=options.get("use_ssl"),
        )
    _no_tls(url, options.get("use_ssl"), "redis_backend_use_ssl")
    if scheme == "sqlite":
        from .sqlite.results import SQLiteBackend

        return SQLiteBackend(url, expires=expires)
    if scheme in ("memory", "cache+memory"):
        from .memory.results import MemoryBackend

        return MemoryBackend(url, expires=expires)
    raise ConfigurationError(_unsupported_backend(url))
