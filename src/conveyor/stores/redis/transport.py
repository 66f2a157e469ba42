"""The Redis broker: lists per queue and priority, leases in a zset, Lua for each step.

How a message moves (each step is one script, so no crash can leave it half-done; a
message due now is queued with the script's two writes sent as plain commands, where
half-done only delays a wake: see _Push):

    enqueue.lua   LPUSH onto <p>:queue:<q>:<level>    or ZADD <p>:queue:<q>:eta when not due
    fetch.lua     RPOP up to N, HSET each into <p>:inflight:<consumer>; promote due ETAs
    ack           HDEL <p>:inflight:<consumer> <tag>  (sent behind the result, no wait)
    release.lua   unstarted messages back to the front of their queue
    reclaim.lua   a dead consumer's in-flight messages back to the front of their queue

A consumer's lease is its score in <p>:consumers. The worker renews it while it lives;
when it stops, any other worker's keeper reclaims its messages within a lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ..aio import AsyncPublishing
from ..coordination import CoordinatingStore, Coordinator
from ..mailbox import Mailbox, MailboxStore
from ..transport import (
    PRIORITY_LEVELS,
    Delivery,
    LeasedDeliveries,
    QueueStats,
    ResultWrite,
    Transport,
    TransportConsumer,
    priority_level,
)
from .aio import AsyncLink
from .connection import (
    CONNECTION_ERRORS,
    RedisClient,
    RedisLink,
    load_script,
    pool_from_url,
    replicated_call,
    ssl_options,
)
from .connection import text as _text
from .coordination import RedisCoordinator
from .keys import RedisKeys
from .probe import RedisLooks
from .results import STORE, store_command
from .topology import RedisOptions

if TYPE_CHECKING:
    from ..results import ResultBackend


__all__ = ["RedisConsumer", "RedisTransport"]

logger = logging.getLogger("conveyor.transport")

_PACKAGE = "conveyor.stores.redis"
ENQUEUE = load_script(_PACKAGE, "enqueue")
FETCH = load_script(_PACKAGE, "fetch")
RELEASE = load_script(_PACKAGE, "release")
RECLAIM = load_script(_PACKAGE, "reclaim")
RENEW = load_script(_PACKAGE, "renew")
DEFER = load_script(_PACKAGE, "defer")
SCRIPTS = (ENQUEUE, FETCH, RELEASE, RECLAIM, RENEW)

# Redis checks blocked-command timeouts on its server cron (hz 10 by default).
_REDIS_TICK = 0.1

# Redis's Lua unpack() takes at most ~8000 values; bulk publishes go in chunks.
_CHUNK = 1000


class RedisTransport(
    Transport,
    LeasedDeliveries,
    CoordinatingStore,
    MailboxStore,
    RedisLooks,  # the event stream, the oldest-message and ETA probes
    AsyncPublishing,
):
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "conveyor",
        transport_options: Mapping[str, Any] | None = None,
        use_ssl: Any = None,
    ) -> None:
        self.url = url
        self.keys = RedisKeys(key_prefix)
        self.location = f"{url} {key_prefix}"
        self.options = RedisOptions.read(url, transport_options)
        tls = ssl_options(use_ssl, "broker_use_ssl")
        self.pool = pool_from_url(url, transport_options, tls=tls)
        self._async = AsyncLink(url, self.pool, tls)  # the async client's sends
        self.client = RedisClient(connection_pool=self.pool)
        self._scripts = {s.name: self.client.register_script(s.source) for s in SCRIPTS}
        self._local = threading.local()
        self._announced: set[str] = set()
        self._pushes: dict[tuple[str, int], _Push] = {}
        self._coordinator: RedisCoordinator | None = None

    def coordination(self) -> Coordinator:
        if self._coordinator is None:
            self._coordinator = RedisCoordinator(
                self.url, key_prefix=self.keys.prefix, pool=self.pool, transport=self
            )
        return self._coordinator

    # producing ----------------------------------------------------------------------
    def _link(self) -> RedisLink:
        # A raw link per thread and process: ~2x faster than redis-py's client, and a
        # forked child must never write on its parent's socket.
        link: RedisLink | None = getattr(self._local, "link", None)
        if link is None or self._local.pid != os.getpid():
            link = RedisLink(self.pool, (ENQUEUE,))
            self._local.link = link
            self._local.pid = os.getpid()
        return link

    def publish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        if (
            countdown is None
            and eta is None
            and queue in self._announced
            and not self.options.wait_for_replicas
        ):
            self._push(queue, priority, bodies)
            return
        commands = self._enqueue_commands(queue, bodies, priority, countdown, eta)
        if self.options.wait_for_replicas:
            self._replicated(commands)
        else:
            for command in commands:
                self._call(command)
        self._announced.add(queue)

    async def apublish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        """:meth:`publish` on the running event loop (redis.asyncio); a store that must
        wait for replicas, or a Sentinel one, publishes on a thread instead."""
        if self.options.wait_for_replicas or not self._async.native:
            await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: self.publish(
                    queue, bodies, priority=priority, countdown=countdown, eta=eta
                ),
            )
            return
        for command in self._enqueue_commands(queue, bodies, priority, countdown, eta):
            await self._async.script(ENQUEUE, command)
        self._announced.add(queue)

    def _enqueue_commands(
        self,
        queue: str,
        bodies: Sequence[bytes],
        priority: int,
        countdown: float | None,
        eta: float | None,
    ) -> list[tuple[Any, ...]]:
        level = priority_level(priority)
        countdown_ms = -1 if countdown is None else max(0, int(countdown * 1000))
        eta_ms = -1 if eta is None else int(eta * 1000)
        where = (*self.keys.enqueue_keys(queue, level), self.keys.queues)
        # The known-queues set needs one SADD per queue and process, not per message.
        announce = "" if queue in self._announced else queue
        head = (announce, str(level), countdown_ms, eta_ms)
        return [
            ENQUEUE.command(where, (*head, *bodies[start : start + _CHUNK]))
            for start in range(0, len(bodies), _CHUNK)
        ]

    def _push(self, queue: str, priority: int, bodies: Sequence[bytes]) -> None:
        """Queue messages that are due now: LPUSH and the wake ZADD, pipelined in one
        write from commands packed once per queue and level (see :class:`_Push`)."""
        if not bodies:
            return
        push = self._pushes.get((queue, priority))
        if push is None:
            level = priority_level(priority)
            push = self._pushes[(queue, priority)] = _Push(self.keys, queue, level)
        link = self._link()
        try:
            link.call_packed(*push.packed(bodies))
        except CONNECTION_ERRORS:
            link.call_packed(*push.packed(bodies))  # one reconnect, as _call

    def _replicated(self, commands: Sequence[tuple[Any, ...]]) -> None:
        # Publish and WAIT on one connection; after a lost connection both go again (the
        # publish may then be queued twice: at least once, never lost).
        link = self._link()
        try:
            replicated_call(link, commands, self.options)
        except CONNECTION_ERRORS:
            replicated_call(link, commands, self.options)

    def _call(self, command: tuple[Any, ...]) -> Any:
        link = self._link()
        try:
            return link.call(command)
        except CONNECTION_ERRORS:
            return link.call(command)  # one reconnect, then the error reaches the caller

    # consuming ----------------------------------------------------------------------
    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None = None,
    ) -> TransportConsumer:
        carried = results if results is not None and self.carries_results_of(results) else None
        ttl_ms = max(1, int(carried.expires * 1000)) if carried is not None else None
        return RedisConsumer(self, queues, consumer_id, lease_seconds, ttl_ms)

    def renew(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        if consumer_ids:
            self._scripts["renew"](
                keys=[self.keys.consumers], args=[int(lease_seconds * 1000), *consumer_ids]
            )

    def reclaim(self, consumer_id: str | None = None) -> int:
        moved = self._scripts["reclaim"](
            keys=[self.keys.consumers, self.keys.redeliveries],
            args=[self.keys.prefix, consumer_id or "", 50],
        )
        return int(moved)

    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self._scripts["release"](
                keys=[self.keys.inflight(consumer_id), self.keys.redeliveries],
                args=[d.tag for d in deliveries],
            )

    def discard(self, consumer_id: str, tags: Sequence[str]) -> None:
        if tags:
            self.client.hdel(self.keys.inflight(consumer_id), *tags)

    def leased_body(self, consumer_id: str, tag: str) -> bytes | None:
        value: Any = self.client.hget(self.keys.inflight(consumer_id), tag)
        if value is None:
            return None
        # list key \n deliveries \n body (see fetch.lua)
        _, _, rest = bytes(value).partition(b"\n")
        _, _, body = rest.partition(b"\n")
        return body

    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        keys = (self.keys.inflight(consumer_id), self.keys.redeliveries)
        args = (delivery.tag, max(0, int(delay * 1000)))
        try:
            self._link().script(DEFER, keys, args)
        except CONNECTION_ERRORS:
            self._link().script(DEFER, keys, args)  # one reconnect, then the error is raised

    # inspection ---------------------------------------------------------------------
    def queues(self) -> list[QueueStats]:
        names = sorted(_text(n) for n in self.client.smembers(self.keys.queues))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            for level in range(PRIORITY_LEVELS):
                pipe.llen(self.keys.level(name, level))
            pipe.zcard(self.keys.eta(name))
        replies = pipe.execute()
        stats = []
        step = PRIORITY_LEVELS + 1
        for i, name in enumerate(names):
            chunk = replies[i * step : (i + 1) * step]
            by_priority = {level: n for level, n in enumerate(chunk[:-1]) if n}
            stats.append(QueueStats(name, sum(chunk[:-1]), chunk[-1], by_priority))
        return stats

    def purge(self, queues: Sequence[str]) -> int:
        pipe = self.client.pipeline(transaction=True)
        for name in queues:
            for level in range(PRIORITY_LEVELS):
                pipe.llen(self.keys.level(name, level))
            pipe.zcard(self.keys.eta(name))
            pipe.delete(
                *(self.keys.level(name, lv) for lv in range(PRIORITY_LEVELS)), self.keys.eta(name)
            )
        replies = pipe.execute()
        step = PRIORITY_LEVELS + 2
        return sum(sum(replies[i * step : i * step + step - 1]) for i in range(len(queues)))

    def inflight_count(self) -> int:
        ids = [_text(c) for c in self.client.zrange(self.keys.consumers, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for consumer_id in ids:
            pipe.hlen(self.keys.inflight(consumer_id))
        return int(sum(pipe.execute())) if ids else 0

    def close(self) -> None:
        if self._coordinator is not None:
            self._coordinator.close()
        link: RedisLink | None = getattr(self._local, "link", None)
        if link is not None and self._local.pid == os.getpid():
            link.close()
        self.pool.disconnect()

    # capabilities beside the interface (stores/mailbox.py, eventlog.py, probe.py) ----
    def control_mailbox(self) -> Mailbox:
        from .mailbox import RedisMailbox

        return RedisMailbox(self)


# Bodies per LPUSH of a bulk publish: each LPUSH holds Redis for its length (~0.1 us a
# body), so other clients wait at most a few ms; the chunks go in one write.
_PUSH_CHUNK = 10_000


class _Push:
    """A due-now publish to one queue and level, packed by hand in RESP.

    ``enqueue.lua`` for a message due now does LPUSH then ``ZADD <wake> 0 w`` (plus a
    SADD, once per queue and process). Sent as two plain commands in one write they
    cost Redis ~1.4 us against ~6 us for the script (INFO commandstats), and the
    client packs them from bytes made once here, instead of ``hiredis.pack_command``
    on the whole EVALSHA (~2.4 us) per call. The keys and the bodies are the ones the
    script writes, so consumers see no difference. The two are not one atomic step: if
    the connection died between them, a message could be queued without its wake, and
    an idle consumer would find it at the end of its blocking wait (its fetch timeout)
    instead of at once; never lost, never twice. The producer still waits for both
    replies, so a publish that returned is in Redis."""

    __slots__ = ("_lpush", "_wake")

    def __init__(self, keys: RedisKeys, queue: str, level: int) -> None:
        level_key, _eta, wake = keys.enqueue_keys(queue, level)
        self._lpush = _bulk(b"LPUSH") + _bulk(level_key.encode())
        self._wake = b"*4\r\n" + b"".join(map(_bulk, (b"ZADD", wake.encode(), b"0", b"w")))

    def packed(self, bodies: Sequence[bytes]) -> tuple[Iterable[bytes], int]:
        """The LPUSH (one per chunk of bodies) and the wake, packed into buffers to
        write in turn, and how many replies they make. One message is one buffer: one
        ``send`` for both commands, and Redis reads them together. Many are packed a
        chunk at a time as they are written, so a million bodies are never all copied
        at once."""
        if len(bodies) == 1:
            body = bodies[0]
            lpush = b"*3\r\n%s$%d\r\n%s\r\n%s" % (self._lpush, len(body), body, self._wake)
            return (lpush,), 2
        return self._chunks(bodies), -(-len(bodies) // _PUSH_CHUNK) + 1

    def _chunks(self, bodies: Sequence[bytes]) -> Iterator[bytes]:
        for start in range(0, len(bodies), _PUSH_CHUNK):
            chunk = bodies[start : start + _PUSH_CHUNK]
            parts = [b"*%d\r\n%s" % (len(chunk) + 2, self._lpush)]
            parts += [b"$%d\r\n%s\r\n" % (len(body), body) for body in chunk]
            yield b"".join(parts)
        yield self._wake


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class RedisConsumer(TransportConsumer):
    """One consuming loop's connection: fetch in batches, ack behind each task."""

    def __init__(
        self,
        broker: RedisTransport,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results_ttl_ms: int | None,
    ) -> None:
        """``results_ttl_ms``: the result backend lives on these keys (its records
        expire after that long), so acks carry the results."""
        if not queues:
            raise ValueError("a consumer needs at least one queue")
        self.broker = broker
        self.consumer_id = consumer_id
        keys = broker.keys
        self._queues = list(queues)
        self._queue_keys = [keys.fetch_keys(q, PRIORITY_LEVELS) for q in queues]
        self._wake = [keys.wake(q) for q in queues]
        self._inflight = keys.inflight(consumer_id)
        self._fixed_keys = (self._inflight, keys.consumers, keys.redeliveries)
        self._lease_ms = int(lease_seconds * 1000)
        carries = results_ttl_ms is not None
        self._link = RedisLink(broker.pool, (*SCRIPTS, STORE) if carries else SCRIPTS)
        self._last_tag = 0
        self._turn = 0
        self._results_ttl_ms = results_ttl_ms or 0
        self.carries_results = carries

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        n = len(self._queue_keys)
        # Serve the queues round robin across fetches, as Celery's Redis transport does.
        order = [(self._turn + i) % n for i in range(n)]
        self._turn = (self._turn + 1) % n
        keys = (*self._fixed_keys, *(k for i in order for k in self._queue_keys[i]))
        args = (self.consumer_id, self._lease_ms, limit, self._last_tag, PRIORITY_LEVELS)
        reply = self._link.script(FETCH, keys, args)
        while True:
            now_ms, next_eta = reply[0], reply[1]
            if len(reply) > 2:
                return self._deliveries(reply, order)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = remaining
            if next_eta >= 0:
                until_due = (next_eta - now_ms) / 1000
                if until_due <= _REDIS_TICK:
                    # Redis times out blocked commands on its ~100 ms clock, so the last
                    # stretch before an ETA is waited here to start it on time.
                    time.sleep(max(0.0, min(until_due, remaining)))
                    reply = self._link.script(FETCH, keys, args)
                    continue
                wait = min(wait, until_due - _REDIS_TICK)
            reply = self._wait_then_fetch(wait, keys, args)

    def _wait_then_fetch(self, wait: float, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """Block until a producer wakes this queue (or ``wait`` runs out), then fetch.

        Both commands go in one write: Redis holds the fetch in the connection's input
        until the blocking pop returns, then runs it at once, so a woken consumer gets its
        messages one round trip sooner than if it asked after waking (the idle round
        trip's "start" hop, bench/rt_hops.py)."""
        block = ("BZPOPMIN", *self._wake, f"{wait:.3f}")
        woke, reply = self._link.exchange((block, FETCH.command(keys, args)))
        if isinstance(woke, Exception):
            raise woke
        if isinstance(reply, NoScriptError):  # SCRIPT FLUSH meanwhile: EVAL loads it
            return self._link.script(FETCH, keys, args)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _deliveries(self, reply: list[Any], order: list[int]) -> list[Delivery]:
        out = []
        for i in range(2, len(reply), 5):
            tag, queue_index, level, deliveries, body = reply[i : i + 5]
            self._last_tag = tag
            queue = self._queues[order[queue_index - 1]]
            out.append(Delivery(str(tag), body, queue, level, deliveries))
        return out

    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        ack = ("HDEL", self._inflight, delivery.tag)
        if result is not None and self.carries_results:
            self._link.send((store_command(self.broker.keys, self._results_ttl_ms, result), ack))
        else:
            self._link.send((ack,))

    def store(self, result: ResultWrite) -> bool:
        """Send an interim state behind the acks, when the backend is on this Redis."""
        if not self.carries_results:
            return False
        self._link.send((store_command(self.broker.keys, self._results_ttl_ms, result),))
        return True

    def release(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self._link.script(
                RELEASE,
                (self._inflight, self.broker.keys.redeliveries),
                [d.tag for d in deliveries],
            )

    def recover(self, known_tags: set[str]) -> int:
        tags = [_text(t) for t in self.broker.client.hkeys(self._inflight)]
        lost = [t for t in tags if t not in known_tags]
        if lost:
            self.broker.release(
                self.consumer_id, [Delivery(t, b"", "", 0) for t in sorted(lost, key=int)]
            )
        return len(lost)

    def flush(self) -> None:
        self._link.drain()

    def close(self) -> None:
        self._link.close()
