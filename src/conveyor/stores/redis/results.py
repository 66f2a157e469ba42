"""The Redis result backend.

A final result is the single element of the list ``<p>:result:<id>``; ``get()`` waits
with ``BLMOVE key key`` (the element moves onto the same list, so it stays), which Redis
answers the moment the worker's RPUSH lands: a push, no polling, one round trip.
Interim states (RECEIVED, STARTED, PROGRESS, RETRY) live in ``<p>:state:<id>``. Every
key carries the ``result_expires`` TTL.

Chords: ``chord_part.lua`` stores a header task's result, adds its id to the chord's
done set and, when that completes the set, queues the body on the broker's list, all
in one script (see docs/architecture.md, "Workflows").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..aio import AsyncResults
from ..results import ChordBody, ChordSpec, ResultBackend, ResultsLink, StoreBehind
from ..transport import ResultWrite
from .aio import AsyncLink
from .connection import (
    Command,
    RedisClient,
    RedisLink,
    RedisUnavailable,
    load_script,
    pool_from_url,
    ssl_options,
)
from .keys import RedisKeys

__all__ = ["STORE", "RedisBackend", "RedisResultsLink", "store_command"]

logger = logging.getLogger("conveyor.backend")

STORE = load_script("conveyor.stores.redis", "store_result")
CHORD_PART = load_script("conveyor.stores.redis", "chord_part")

# Longest single blocking wait; redis-py's default socket timeout is 5 s.
_SLICE = 2.0
# A result write sent behind an AMQP ack whose reply has not come after this long holds
# the next ack back until it is confirmed (RedisResultsLink.send). A Redis that is up
# answers in well under a millisecond, even on this loaded machine; 50 ms is past any
# scheduling hiccup and still bounds how long an acked task's result may be unconfirmed
# while the loop goes on (docs/architecture.md, "Results behind AMQP acks").
OVERDUE = 0.05


def store_command(keys: RedisKeys, ttl_ms: int, write: ResultWrite) -> Command:
    """The one command that stores ``write``: sent by the backend itself, or by a Redis
    transport on the same keys behind its ack (the same round trip)."""
    if write.final:
        where = (keys.result(write.task_id), keys.state(write.task_id))
        return STORE.command(where, (write.payload, ttl_ms))
    return ("SET", keys.state(write.task_id), write.payload, "PX", ttl_ms)


class RedisBackend(ResultBackend, AsyncResults, StoreBehind):
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "conveyor",
        expires: float = 86400.0,
        transport_options: Mapping[str, Any] | None = None,
        use_ssl: Any = None,
    ) -> None:
        self.url = url
        self.keys = RedisKeys(key_prefix)
        self.location = f"{url} {key_prefix}"
        self.expires = expires
        self.ttl_ms = max(1, int(expires * 1000))
        # Every backend command is a read or an idempotent write, so a connection that
        # died with a Redis restart is simply retried on a fresh one.
        tls = ssl_options(use_ssl, "redis_backend_use_ssl")
        self.pool = pool_from_url(
            url,
            transport_options,
            role="the result backend",
            tls=tls,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 5),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self.client = RedisClient(connection_pool=self.pool)
        self._async = AsyncLink(url, self.pool, tls)  # the async client's reads and waits
        self._store = self.client.register_script(STORE.source)
        self._chord_part = self.client.register_script(CHORD_PART.source)

    def store(self, task_id: str, payload: bytes, final: bool) -> None:
        if final:
            self._store(
                keys=[self.keys.result(task_id), self.keys.state(task_id)],
                args=[payload, self.ttl_ms],
            )
        else:
            self.client.set(self.keys.state(task_id), payload, px=self.ttl_ms)

    # chords ---------------------------------------------------------------------------
    def chord_start(self, spec: ChordSpec) -> None:
        keys = self.keys
        body = spec.body
        fields: dict[Any, Any] = {
            "size": len(spec.members),
            "members": json.dumps(spec.members),
            "body": body.body,
            "queue": body.queue,
            "priority": body.priority,
        }
        if spec.enqueue:  # the broker's lists are in this Redis: the script queues the body
            fields["list"] = keys.level(body.queue, body.priority)
            fields["wake"] = keys.wake(body.queue)
            fields["queues"] = keys.queues
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(keys.chord(spec.id), mapping=fields)
        pipe.pexpire(keys.chord(spec.id), self.ttl_ms)
        pipe.execute()

    def chord_part(self, chord_id: str, write: ResultWrite) -> ChordBody | None:
        keys = self.keys
        reply = self._chord_part(
            keys=[
                keys.result(write.task_id),
                keys.state(write.task_id),
                keys.chord(chord_id),
                keys.chord_done(chord_id),
            ],
            args=[write.payload, self.ttl_ms, write.task_id],
        )
        if isinstance(reply, list):
            body, queue, priority = reply
            return ChordBody(bytes(body), queue.decode(), int(priority))
        if reply == -1:
            logger.warning("chord %s unknown (expired?): %s not counted", chord_id, write.task_id)
        return None

    def chord_members(self, chord_id: str) -> list[str] | None:
        raw = self.client.hget(self.keys.chord(chord_id), "members")
        if raw is None:
            return None
        members: list[str] = json.loads(raw)
        return members

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

    # the async client (stores/aio.py) ---------------------------------------------------
    async def aget(self, task_id: str) -> bytes | None:
        return (await self.aget_many([task_id]))[0]

    @property
    def async_native(self) -> bool:
        return self._async.native

    async def aget_many(self, task_ids: Sequence[str]) -> list[bytes | None]:
        commands: list[Command] = []
        for task_id in task_ids:
            commands.append(("LINDEX", self.keys.result(task_id), 0))
            commands.append(("GET", self.keys.state(task_id)))
        replies = await self._async.pipeline(commands)
        finals, interims = replies[::2], replies[1::2]
        return [f if f is not None else i for f, i in zip(finals, interims, strict=True)]

    async def await_final(self, task_id: str, timeout: float | None) -> bytes | None:
        return await self._async.blmove_wait(self.keys.result(task_id), timeout)

    def forget(self, task_id: str) -> None:
        self.client.delete(self.keys.result(task_id), self.keys.state(task_id))

    # results behind a transport's acks (StoreBehind) -------------------------------------
    def results_link(self) -> ResultsLink | None:
        return RedisResultsLink(self)

    def close(self) -> None:
        self.pool.disconnect()


class RedisResultsLink(ResultsLink):
    """Results sent behind AMQP acks on one connection of a consuming loop's own
    (:class:`StoreBehind`): the same ``store_result.lua`` the backend runs, pipelined.
    ``_sent`` holds the send time of each unconfirmed write, oldest first, so an
    overdue reply is noticed (:data:`OVERDUE`).

    A small thread confirms overdue writes while the loop is busy in a task (it takes
    the link only when the loop does not hold it): a result whose connection dropped
    right after it was written is sent again within ~OVERDUE, not when the next task
    ends, which may be hours later."""

    def __init__(self, backend: RedisBackend) -> None:
        self._keys = backend.keys
        self._ttl_ms = backend.ttl_ms
        self._link = RedisLink(backend.pool, (STORE,))
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # Set while writes may be unconfirmed: an idle link's thread sleeps on it
        # instead of waking every OVERDUE (a threads pool has a link per thread).
        self._pending = threading.Event()
        self._watch: threading.Thread | None = None

    def send(self, write: ResultWrite) -> bool:
        command = store_command(self._keys, self._ttl_ms, write)
        with self._lock:
            now = time.monotonic()
            healthy = True
            try:
                self._confirm(now, wait=False)
            except RedisUnavailable as exc:
                logger.warning("result backend unreachable; acks wait for results: %s", exc)
                healthy = False
            self._sent.append(now)
            try:
                # Kept by the link even when this fails: sent again once it reconnects.
                self._link.send((command,))
            except RedisUnavailable:
                healthy = False
        if not self._pending.is_set():
            self._pending.set()
        if self._watch is None:
            self._watch = threading.Thread(
                target=self._watch_overdue, name="conveyor-results-link", daemon=True
            )
            self._watch.start()
        return healthy

    def confirm(self, wait: bool) -> None:
        with self._lock:
            self._confirm(time.monotonic(), wait)

    def _confirm(self, now: float, wait: bool) -> None:
        link = self._link
        try:
            try:
                link.read_arrived()
            except RedisUnavailable:
                if not link.unconfirmed:
                    return  # closed while nothing was pending: the next write reconnects
                wait = True  # send them again now, and hold the ack until they land
            overdue = bool(self._sent) and now - self._sent[0] > OVERDUE
            if link.unconfirmed and (wait or overdue or not link.connected):
                link.drain()  # reconnects and sends the unconfirmed writes again first
        finally:
            while len(self._sent) > link.unconfirmed:
                self._sent.popleft()

    def _watch_overdue(self) -> None:
        while self._pending.wait() and not self._closed.wait(OVERDUE):
            try:
                oldest = self._sent[0]
            except IndexError:
                with self._lock:  # a send appends under the lock, then sets _pending
                    if not self._sent:
                        self._pending.clear()
                continue
            if time.monotonic() - oldest <= OVERDUE or not self._lock.acquire(blocking=False):
                continue  # young, or the loop is using the link (and reads it itself)
            try:
                self._confirm(time.monotonic(), wait=False)
            except RedisUnavailable as exc:
                logger.debug("results not confirmed yet, retrying: %s", exc)
            finally:
                self._lock.release()

    def close(self) -> None:
        self._closed.set()
        self._pending.set()  # wake the thread, to see _closed
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(timeout=5)
        try:
            self.confirm(wait=True)
        except RedisUnavailable as exc:
            logger.warning("%d result(s) not confirmed at close: %s", len(self._sent), exc)
        self._link.reset()
