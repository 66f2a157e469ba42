"""The Redis result backend.

A final result is the single element of the list ``<p>:result:<id>``; ``get()`` waits
with ``BLMOVE key key`` (the element moves onto the same list, so it stays), which Redis
answers the moment the worker's RPUSH lands: a push, no polling, one round trip.
Interim states (RECEIVED, STARTED, PROGRESS, RETRY) live in ``<p>:state:<id>``. Every
key carries the ``result_expires`` TTL.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from ..brokers._redis import load_script, pool_from_url
from ..brokers.base import ResultWrite
from ..brokers.keys import RedisKeys
from .base import ResultBackend

__all__ = ["RedisBackend"]

STORE = load_script("conveyor.backends", "store_result")

# Longest single blocking wait; redis-py's default socket timeout is 5 s.
_SLICE = 2.0


class RedisBackend(ResultBackend):
    def __init__(self, url: str, *, key_prefix: str = "conveyor", expires: float = 86400.0) -> None:
        self.url = url
        self.keys = RedisKeys(key_prefix)
        self.ttl_ms = max(1, int(expires * 1000))
        self.pool = pool_from_url(url)
        self.client = redis.Redis(connection_pool=self.pool)
        self._store = self.client.register_script(STORE.source)
        self.scripts = (STORE,)  # loaded on a co-located broker's connections

    def store_command(self, write: ResultWrite) -> tuple[Any, ...]:
        """The one command that stores ``write`` (sent by a co-located broker's ack)."""
        if write.final:
            keys = (self.keys.result(write.task_id), self.keys.state(write.task_id))
            return STORE.command(keys, (write.payload, self.ttl_ms))
        return ("SET", self.keys.state(write.task_id), write.payload, "PX", self.ttl_ms)

    def store(self, task_id: str, payload: bytes, final: bool) -> None:
        if final:
            self._store(
                keys=[self.keys.result(task_id), self.keys.state(task_id)],
                args=[payload, self.ttl_ms],
            )
        else:
            self.client.set(self.keys.state(task_id), payload, px=self.ttl_ms)

    def get(self, task_id: str) -> bytes | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.lindex(self.keys.result(task_id), 0)
        pipe.get(self.keys.state(task_id))
        final, interim = pipe.execute()
        value: bytes | None = final if final is not None else interim
        return value

    def get_many(self, task_ids: Sequence[str]) -> list[bytes | None]:
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.lindex(self.keys.result(task_id), 0)
            pipe.get(self.keys.state(task_id))
        replies: list[bytes | None] = pipe.execute()
        finals, interims = replies[::2], replies[1::2]
        return [f if f is not None else i for f, i in zip(finals, interims, strict=True)]

    def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        key = self.keys.result(task_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Wait in slices shorter than the client's socket timeout, so a long get()
            # neither trips it nor hangs forever on a Redis that went away.
            slice_ = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            seconds: Any = max(slice_, 0.001)  # redis-py's stub says int; Redis takes a float
            value: Any = self.client.blmove(key, key, seconds, "RIGHT", "LEFT")
            if value is not None or (deadline is not None and time.monotonic() >= deadline):
                return bytes(value) if value is not None else None

    def forget(self, task_id: str) -> None:
        self.client.delete(self.keys.result(task_id), self.keys.state(task_id))

    def close(self) -> None:
        self.pool.disconnect()
