"""The result backend interface, and the meta record every backend stores.

A backend keeps one record per task: its latest state, and when it is final, the
result or the error. Waiting for a final state is pushed by the backend (Redis wakes a
blocked client, SQLite a condition), never a sleep-and-poll loop in the caller.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..message import has_non_finite
from ..typed_json import MARKER, tag, untag

if TYPE_CHECKING:
    from .transport import ResultWrite

__all__ = [
    "ChordBody",
    "ChordSpec",
    "ResultBackend",
    "ResultMeta",
    "ResultsLink",
    "StoreBehind",
    "decode_meta",
    "encode_meta",
]


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


def error_meta(
    task_id: str,
    status: str,
    exc: BaseException,
    *,
    traceback: str | None = None,
    name: str | None = None,
    retries: int = 0,
    parent_id: str | None = None,
    worker: str | None = None,
) -> ResultMeta:
    """The record of a task that ended in an exception (failed, revoked, rejected): its
    type by dotted name and its arguments, so ``get()`` can raise it again."""
    return ResultMeta(
        task_id=task_id,
        status=status,
        exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        exc_args=[_plain(arg) for arg in exc.args],
        traceback=traceback,
        date_done=time.time(),
        name=name,
        retries=retries,
        parent_id=parent_id,
        worker=worker,
    )


def _plain(value: Any) -> Any:
    """An exception argument as something every serializer can store."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ResultMeta)


def encode_meta(meta: ResultMeta) -> bytes:
    try:
        tagged = tag(meta.result)  # bytes stay bytes (typed_json.py)
        if tagged is not meta.result:
            meta = msgspec.structs.replace(meta, result=tagged)
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
    meta = _decoder.decode(data)
    if MARKER in data:
        meta.result = untag(meta.result)
    return meta


@dataclass(frozen=True, slots=True)
class ChordBody:
    """The message that starts a chord's body (the join task), and where it goes."""

    body: bytes
    queue: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class ChordSpec:
    """A chord, recorded before its header is sent: the ids of the header tasks it
    waits for, in order, and the message to queue when the last one is stored.
    ``enqueue``: the broker lives in this backend's store, so the backend queues the
    body itself, in the same atomic step as the last count (exactly once)."""

    id: str
    members: list[str]
    body: ChordBody
    enqueue: bool = False


class ResultBackend(ABC):
    url: str
    # Where the records live, e.g. "redis://host:6379/0 conveyor": a transport with the
    # same location writes them in its acks (Transport.carries_results_of).
    location: str
    expires: float  # seconds a record is kept (result_expires)

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

    # chords: the join is the backend's, atomic, never polled (docs/architecture.md) -----
    @abstractmethod
    def chord_start(self, spec: ChordSpec) -> None:
        """Record a chord before its header tasks are sent (again: harmless)."""

    @abstractmethod
    def chord_part(self, chord_id: str, write: ResultWrite) -> ChordBody | None:
        """Store a header task's final state and count it toward its chord, in one
        atomic step, counting each task id once however often it is stored (retries,
        redeliveries). Returns the body message when this step completed the chord and
        the caller must send it; None when the chord is not complete, was completed
        before, or the backend queued the body itself (``spec.enqueue``)."""

    @abstractmethod
    def chord_members(self, chord_id: str) -> list[str] | None:
        """The header task ids of a recorded chord, in order (None: unknown)."""

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return getattr(self, "url", type(self).__name__)


class ResultsLink(ABC):
    """One consuming loop's own connection to a result backend, for results sent behind
    the acks of a transport that cannot hold them (AMQP): a write is sent without
    waiting for its reply and kept until the reply is read, and sent again on a new
    connection if the old one dropped first (every write replaces, so twice is harmless).
    Not thread-safe: the loop that owns it is its only user.

    The rule the transport's ack follows (docs/architecture.md, "Results behind AMQP
    acks"): a task's result is written to this link before its ack is written, and
    :meth:`send` says False, keeping the write, when an earlier write is not confirmed
    and cannot be (the connection is gone, or a reply is overdue and does not come):
    the ack must then wait for :meth:`confirm`."""

    @abstractmethod
    def send(self, write: ResultWrite) -> bool:
        """Write ``write`` without waiting for its reply. First read the replies that
        arrived (without waiting), and wait for every earlier one when the connection
        is found closed or the oldest has waited longer than the backend's limit.
        True: the write left on an open connection behind confirmed (or young) ones;
        False: the backend is unreachable, the write is kept for :meth:`confirm`."""

    @abstractmethod
    def confirm(self, wait: bool) -> None:
        """Read the replies that arrived; with ``wait`` (or a reply overdue), every one,
        reconnecting and sending the unconfirmed writes again when the connection
        dropped. Raises :class:`~conveyor.exceptions.BrokerUnavailable` when the
        backend cannot be reached (the writes are kept)."""

    @abstractmethod
    def close(self) -> None:
        """Confirm what can be confirmed, then close the connection."""


class StoreBehind(ABC):
    """The capability of a result backend that can take results behind a transport's
    acks on a connection per consuming loop (Redis). A transport whose acks cannot
    carry results (AMQP) asks for it, so the result's round trip leaves the task's
    critical path; chords (:meth:`ResultBackend.chord_part`) and every call that needs
    the reply stay on the backend's own synchronous calls."""

    @abstractmethod
    def results_link(self) -> ResultsLink | None:
        """A new link for one consuming loop; None when this backend cannot offer one
        (a Redis Cluster spreads a task's records over nodes)."""
