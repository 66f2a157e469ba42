"""The result backend interface, and the meta record every backend stores.

A backend keeps one record per task: its latest state, and when it is final, the
result or the error. Waiting for a final state is pushed by the backend (Redis wakes a
blocked client, SQLite a condition), never a sleep-and-poll loop in the caller.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import msgspec

from ..message import has_non_finite

__all__ = ["ResultBackend", "ResultMeta", "decode_meta", "encode_meta"]


class ResultMeta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a backend stores for a task."""

    task_id: str
    status: str
    result: Any = None
    traceback: str | None = None
    exc_type: str | None = None  # "module.QualName" of the exception, for re-raising
    exc_args: list[Any] | None = None
    date_done: float | None = None
    name: str | None = None
    retries: int = 0
    worker: str | None = None
    parent_id: str | None = None
    children: list[str] | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ResultMeta)


def encode_meta(meta: ResultMeta) -> bytes:
    try:
        body = _encoder.encode(meta)
        if b"null" in body and has_non_finite(meta.result):
            raise TypeError("inf and nan cannot be stored as JSON")
        return body
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        # The task returned something the result serializer cannot hold: record that
        # instead of losing the outcome altogether.
        fallback = ResultMeta(
            task_id=meta.task_id,
            status="FAILURE",
            exc_type="conveyor.exceptions.TaskError",
            exc_args=[f"result of type {type(meta.result).__name__} cannot be stored: {exc}"],
            date_done=meta.date_done or time.time(),
            name=meta.name,
        )
        return _encoder.encode(fallback)


def decode_meta(data: bytes) -> ResultMeta:
    return _decoder.decode(data)


class ResultBackend(ABC):
    url: str

    @abstractmethod
    def store(self, task_id: str, payload: bytes, final: bool) -> None:
        """Record an encoded :class:`ResultMeta`. A final one wakes every waiter."""

    @abstractmethod
    def get(self, task_id: str) -> bytes | None:
        """The latest record, final or interim; None when nothing is known (PENDING)."""

    def get_many(self, task_ids: Sequence[str]) -> list[bytes | None]:
        """:meth:`get` for each task, in order; a backend that can answer in one round
        trip does (collecting a group's results, ``conveyor demo``)."""
        return [self.get(task_id) for task_id in task_ids]

    @abstractmethod
    def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Block until the task has a final record; None on timeout."""

    @abstractmethod
    def forget(self, task_id: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return getattr(self, "url", type(self).__name__)
