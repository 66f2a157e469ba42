"""Stores: where messages, results and shared worker state live, chosen by URL scheme.

Each store is a package (``redis/``, ``sqlite/``, ``memory/``) holding its transport,
its result backend and its coordination pieces side by side; the interfaces they
implement are ``transport.py`` and ``results.py`` beside this file.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from .redis.topology import REDIS_SCHEMES
from .results import ResultBackend, ResultMeta, decode_meta, encode_meta
from .transport import Broker, BrokerConsumer, DeadLetter, Delivery, QueueStats, ResultWrite
from .urls import masked

__all__ = [
    "Broker",
    "BrokerConsumer",
    "DeadLetter",
    "Delivery",
    "QueueStats",
    "ResultBackend",
    "ResultMeta",
    "ResultWrite",
    "backend_from_url",
    "broker_from_url",
    "check_backend_url",
    "decode_meta",
    "encode_meta",
]


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def broker_from_url(url: str, **options: Any) -> Broker:
    scheme = _scheme(url)
    if scheme in REDIS_SCHEMES:
        from .redis.transport import RedisBroker

        return RedisBroker(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            transport_options=options.get("transport_options"),
            use_ssl=options.get("use_ssl"),
        )
    _no_tls(url, options.get("use_ssl"), "broker_use_ssl")
    if scheme == "sqlite":
        from .sqlite.transport import SQLiteBroker

        return SQLiteBroker(url)
    if scheme == "memory":
        from .memory.transport import MemoryBroker

        return MemoryBroker(url)
    raise ConfigurationError(
        f"unsupported broker URL {url!r}: expected redis://, rediss://, unix://, sentinel://, "
        "sqlite:///path or memory://"
    )


def _no_tls(url: str, use_ssl: Any, setting: str) -> None:
    # A TLS setting for a store that has no network connection is a mistake to say.
    if use_ssl:
        raise ConfigurationError(f"{setting} is set, but {masked(url)!r} is not a Redis URL")


BACKEND_SCHEMES = frozenset({*REDIS_SCHEMES, "sqlite", "memory", "cache+memory"})


def check_backend_url(url: str) -> None:
    """Refuse a result backend conveyor does not have, when the app first sends (and
    when a worker starts), not at the first ``.get()``: Celery's ``rpc://``,
    ``db+postgresql://``, ``django-db`` and the like."""
    if _scheme(url) not in BACKEND_SCHEMES:
        raise ConfigurationError(_unsupported_backend(url))


def _unsupported_backend(url: str) -> str:
    return (
        f"unsupported result backend {masked(url)!r}: expected redis://, rediss://, "
        "unix://, sentinel://, sqlite:///path or memory:// (conveyor has no rpc://, "
        "database, Django or cache backends)"
    )


def backend_from_url(url: str, **options: Any) -> ResultBackend:
    scheme = _scheme(url)
    expires = options.get("expires", 86400.0)
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
