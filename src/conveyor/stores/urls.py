"""Store URLs as they may be shown: in errors, logs and banners, never with a password."""

from __future__ import annotations

import re

__all__ = ["CLUSTER_SCHEMES", "REDIS_SCHEMES", "SENTINEL_SCHEMES", "masked"]

# The schemes the Redis store answers, here rather than in redis/topology.py: picking a
# store by scheme (stores/__init__.py) must not import redis-py, whose import costs a
# worker on another store ~0.1 s of start-up (docs/benchmarks.md, issue 17).
SENTINEL_SCHEMES = ("sentinel",)
REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES)
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

# ``password=...`` in a query string (redis-py reads it there too).
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***`` (userinfo and query string)."""
    scheme, sep, rest = url.partition("://")
    if sep:
        credentials, at, host = rest.rpartition("@")
        if at and ":" in credentials:
            user = credentials.split(":", 1)[0]
            url = f"{scheme}://{user}:***@{host}"
    return _QUERY_PASSWORD.sub(r"\1***", url)
