"""Result backends, chosen by URL scheme."""

from __future__ import annotations

from typing import Any

from ..exceptions import ConfigurationError
from .base import ResultBackend, ResultMeta, decode_meta, encode_meta

__all__ = ["ResultBackend", "ResultMeta", "backend_from_url", "decode_meta", "encode_meta"]


def backend_from_url(url: str, **options: Any) -> ResultBackend:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBackend

        return RedisBackend(
            url,
            key_prefix=options.get("key_prefix", "conveyor"),
            expires=options.get("expires", 86400.0),
        )
    if scheme == "sqlite":
        from .sqlite import SQLiteBackend  # type: ignore[import-not-found,unused-ignore]

        backend: ResultBackend = SQLiteBackend(url, expires=options.get("expires", 86400.0))
        return backend
    if scheme in ("memory", "cache+memory"):
        from .memory import MemoryBackend  # type: ignore[import-not-found,unused-ignore]

        memory: ResultBackend = MemoryBackend(url, expires=options.get("expires", 86400.0))
        return memory
    raise ConfigurationError(
        f"unsupported result backend URL {url!r}: expected redis://, rediss://, unix://, "
        "sqlite:///path or memory://"
    )
