"""What the async client (``adelay``, ``aget``, ``await result``) needs of a store.

Two capabilities beside the sync interfaces, offered by a store that has a native async
client (Redis, through ``redis.asyncio``):

- :class:`AsyncPublishing` on a transport: ``apublish``, the same as ``publish``;
- :class:`AsyncResults` on a result backend: ``aget``, ``aget_many`` and ``await_final``
  (the same as ``get``, ``get_many`` and ``wait``).

A store without them (SQLite, memory, RabbitMQ, Redis Cluster and Sentinel) is served
by :func:`publish_async` and friends on a thread, so the event loop never blocks on
it: sends and reads on the loop's default executor (each is short), waits by one thread
per backend that serves them all (stores/result_waiter.py).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence

from .result_waiter import waiter_for
from .results import ResultBackend
from .transport import Transport

__all__ = [
    "AsyncPublishing",
    "AsyncResults",
    "get_async",
    "get_many_async",
    "publish_async",
    "wait_async",
]

class AsyncPublishing(ABC):
    """A transport that can publish without blocking an event loop."""

    @abstractmethod
    async def apublish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        """:meth:`Transport.publish`, awaited."""


class AsyncResults(ABC):
    """A result backend that can be read and waited on without blocking an event loop."""

    @property
    def async_native(self) -> bool:
        """False where this backend's connection has no async client (e.g. Redis over
        TLS, Sentinel or a cluster): it is then served like a store without one."""
        return True

    @abstractmethod
    async def aget(self, task_id: str) -> bytes | None: ...

    @abstractmethod
    async def aget_many(self, task_ids: Sequence[str]) -> list[bytes | None]: ...

    @abstractmethod
    async def await_final(self, task_id: str, timeout: float | None) -> bytes | None:
        """:meth:`ResultBackend.wait`, awaited: the final record, None on timeout."""


async def publish_async(
    transport: Transport,
    queue: str,
    bodies: Sequence[bytes],
    *,
    priority: int = 0,
    countdown: float | None = None,
    eta: float | None = None,
) -> None:
    if isinstance(transport, AsyncPublishing):
        await transport.apublish(queue, bodies, priority=priority, countdown=countdown, eta=eta)
        return
    def publish() -> None:
        transport.publish(queue, bodies, priority=priority, countdown=countdown, eta=eta)

    await asyncio.get_running_loop().run_in_executor(None, publish)


def _native(backend: ResultBackend) -> AsyncResults | None:
    if isinstance(backend, AsyncResults) and backend.async_native:
        return backend
    return None


async def get_async(backend: ResultBackend, task_id: str) -> bytes | None:
    if (native := _native(backend)) is not None:
        return await native.aget(task_id)
    return await asyncio.get_running_loop().run_in_executor(None, backend.get, task_id)


async def get_many_async(backend: ResultBackend, task_ids: Sequence[str]) -> list[bytes | None]:
    if (native := _native(backend)) is not None:
        return await native.aget_many(task_ids)
    return await asyncio.get_running_loop().run_in_executor(None, backend.get_many, task_ids)


async def wait_async(backend: ResultBackend, task_id: str, timeout: float | None) -> bytes | None:
    if (native := _native(backend)) is not None:
        return await native.await_final(task_id, timeout)
    return await waiter_for(backend).wait(task_id, timeout)
