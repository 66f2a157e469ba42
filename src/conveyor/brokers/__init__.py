"""Brokers (transports), chosen by URL scheme."""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from .base import Broker, BrokerConsumer, DeadLetter, Delivery, QueueStats, ResultWrite

__all__ = [
    "Broker",
    "BrokerConsumer",
    "DeadLetter",
    "Delivery",
    "QueueStats",
    "ResultWrite",
    "broker_from_url",
]


def broker_from_url(url: str, **options: Any) -> Broker:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBroker

        return RedisBroker(url, key_prefix=options.get("key_prefix", "conveyor"))
    if scheme == "sqlite":
        from .sqlite import SQLiteBroker  # type: ignore[import-not-found,unused-ignore]

        broker: Broker = SQLiteBroker(url)
        return broker
    if scheme == "memory":
        from .memory import MemoryBroker  # type: ignore[import-not-found,unused-ignore]

        memory: Broker = MemoryBroker(url)
        return memory
    raise ConfigurationError(
        f"unsupported broker URL {url!r}: expected redis://, rediss://, unix://, "
        "sqlite:///path or memory://"
    )
