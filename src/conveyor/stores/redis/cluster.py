"""The Redis broker on a Redis Cluster: the single-server scripts, one queue at a time.

Every key a script touches must be in one hash slot, so the layout is per queue
(:class:`~conveyor.stores.redis.keys.ClusterKeys`): a queue's lists, its ETA and wake
sets, *and* each consumer's in-flight hash, the consumer leases and the redelivery counts
of that queue share the tag ``{q:<name>}``. Queues spread across the shards; a consumer of
several queues fetches from each queue's shard in turn over a :class:`SlotLink` per queue
(the raw fast path, following the slot across MOVED/ASK and failovers); everything else
goes through redis-py's ``RedisCluster``.

Delivery tags carry their queue (``<n>@<queue>``), so an ack, a release or the keeper's
discard finds the in-flight hash without asking anyone.

Results never ride on the acks here: a task's result lives in its own slot
(``{t:<id>}``), not in the queue's, so the backend stores it (one script, one slot).
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

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
from .connection import load_script, replicated_call, ssl_options
from .connection import text as _text
from .keys import ClusterKeys, RedisKeys, coordination_prefix
from .probe import RedisLooks
from .slots import ClusterRouter, SlotLink, cluster_client
from .topology import RedisOptions

if TYPE_CHECKING:
    from ..results import ResultBackend


__all__ = ["RedisClusterConsumer", "RedisClusterTransport"]

_PACKAGE = "conveyor.stores.redis"
ENQUEUE = load_script(_PACKAGE, "enqueue")
FETCH = load_script(_PACKAGE, "fetch")
RELEASE = load_script(_PACKAGE, "release")
RECLAIM = load_script(_PACKAGE, "reclaim")
RENEW = load_script(_PACKAGE, "renew")
DEFER = load_script(_PACKAGE, "defer")
CONSUMER_SCRIPTS = (FETCH, RELEASE)

_CHUNK = 1000
_REDIS_TICK = 0.1
# An idle consumer of queues on several shards cannot block on all of them at once
# (BZPOPMIN over keys of several slots is refused), so it blocks on each in turn for
# this long: a message on another shard waits at most (queues - 1) x this for it.
_POLL_SLICE = 0.05


def make_tag(number: int, queue: str) -> str:
    return f"{number}@{queue}"


def split_tag(tag: str) -> tuple[str, str]:
    """``<n>@<queue>`` -> (n, queue); the number never holds ``@``, a queue name may."""
    number, _, queue = tag.partition("@")
    return number, queue


def by_queue(tags: Iterable[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for tag in tags:
        number, queue = split_tag(tag)
        grouped[queue].append(number)
    return grouped


class RedisClusterTransport(
    Transport, LeasedDeliveries, CoordinatingStore, MailboxStore, RedisLooks,
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
        self.keys = ClusterKeys(key_prefix)
        self.location = f"{url} {key_prefix}"
        self.options = RedisOptions.read(url, transport_options)
        tls = ssl_options(use_ssl, "broker_use_ssl")
        self.client = cluster_client(url, self.options, tls)
        self.router = ClusterRouter(self.client, url, tls)
        self._scripts = {
            s.name: self.client.register_script(s.source)
            for s in (RELEASE, RECLAIM, RENEW, DEFER)
        }
        self._local = threading.local()
        self._announced: set[str] = set()
        self._coordinator: Coordinator | None = None
        # Consumer leases the coordinator's concurrency slots go by (its slot, not a queue's).
        self.holders = RedisKeys(coordination_prefix(key_prefix)).consumers

    def coordination(self) -> Coordinator:
        if self._coordinator is None:
            from .cluster_coordination import RedisClusterCoordinator

            self._coordinator = RedisClusterCoordinator(
                self.url,
                key_prefix=self.keys.prefix,
                client=self.client,
                router=self.router,
                failover_timeout=self.options.failover_timeout,
                beside=self,
            )
        return self._coordinator

    def link(self, queue: str, scripts: Sequence[Any] = (ENQUEUE,)) -> SlotLink:
        """A raw link to ``queue``'s node, one per thread and process (a forked child
        never writes on its parent's socket)."""
        links: dict[str, SlotLink] | None = getattr(self._local, "links", None)
        if links is None or self._local.pid != os.getpid():
            links = {}
            self._local.links = links
            self._local.pid = os.getpid()
        link = links.get(queue)
        if link is None:
            timeout = self.options.failover_timeout
            link = SlotLink(self.router, self.keys.queue(queue), scripts, timeout)
            links[queue] = link
        return link

    # producing ----------------------------------------------------------------------
    def publish(
        self,
        queue: str,
        bodies: Sequence[bytes],
        *,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> None:
        level = priority_level(priority)
        countdown_ms = -1 if countdown is None else max(0, int(countdown * 1000))
        eta_ms = -1 if eta is None else int(eta * 1000)
        where = self.keys.enqueue_keys(queue, level)
        # ARGV[1] = '': the known-queues set lives in another slot; it is written apart.
        head = ("", str(level), countdown_ms, eta_ms)
        commands = [
            ENQUEUE.command(where, (*head, *bodies[start : start + _CHUNK]))
            for start in range(0, len(bodies), _CHUNK)
        ]
        link = self.link(queue)
        if self.options.wait_for_replicas:
            replicated_call(link, commands, self.options)
        else:
            for command in commands:
                link.call(command)
        if queue not in self._announced:
            self.client.sadd(self.keys.queues, queue)
            self._announced.add(queue)

    # consuming ----------------------------------------------------------------------
    def consumer(
        self,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
        results: ResultBackend | None = None,
    ) -> TransportConsumer:
        return RedisClusterConsumer(self, queues, consumer_id, lease_seconds)

    def carries_results_of(self, backend: ResultBackend) -> bool:
        return False  # a result's slot is the task's, not the queue's

    def known_queues(self) -> list[str]:
        return sorted(_text(n) for n in self.client.smembers(self.keys.queues))

    def stamp_holders(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        """Extend the consumers' leases that concurrency slots go by."""
        self._scripts["renew"](keys=[self.holders], args=[int(lease_seconds * 1000), *consumer_ids])

    def holds(self, consumer_id: str, tag: str) -> bool:
        """True while ``consumer_id`` holds delivery ``tag`` leased."""
        number, queue = split_tag(tag)
        return bool(self.client.hexists(self.keys.queue_inflight(queue, consumer_id), number))

    def renew(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        if not consumer_ids:
            return
        self.stamp_holders(consumer_ids, lease_seconds)
        for queue in self.known_queues():
            self._scripts["renew"](
                keys=[self.keys.queue_consumers(queue)],
                args=[int(lease_seconds * 1000), *consumer_ids],
            )

    def reclaim(self, consumer_id: str | None = None) -> int:
        if consumer_id:
            self.client.zrem(self.holders, consumer_id)  # gone: its slots are free
        moved = 0
        for queue in self.known_queues():
            # reclaim.lua finds in-flight hashes at <ARGV[1]>:inflight:<consumer>: in
            # this queue's slot, since ARGV[1] is the queue's base key.
            moved += int(
                self._scripts["reclaim"](
                    keys=[self.keys.queue_consumers(queue), self.keys.queue_redeliveries(queue)],
                    args=[self.keys.queue(queue), consumer_id or "", 50],
                )
            )
        return moved

    def release(self, consumer_id: str, deliveries: Sequence[Delivery]) -> None:
        for queue, numbers in by_queue(d.tag for d in deliveries).items():
            self._scripts["release"](
                keys=[
                    self.keys.queue_inflight(queue, consumer_id),
                    self.keys.queue_redeliveries(queue),
                ],
                args=numbers,
            )

    def discard(self, consumer_id: str, tags: Sequence[str]) -> None:
        for queue, numbers in by_queue(tags).items():
            self.client.hdel(self.keys.queue_inflight(queue, consumer_id), *numbers)

    def leased_body(self, consumer_id: str, tag: str) -> bytes | None:
        number, queue = split_tag(tag)
        value: Any = self.client.hget(self.keys.queue_inflight(queue, consumer_id), number)
        if value is None:
            return None
        _, _, rest = bytes(value).partition(b"\n")  # list key \n deliveries \n body
        _, _, body = rest.partition(b"\n")
        return body

    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        number, queue = split_tag(delivery.tag)
        keys = [self.keys.queue_inflight(queue, consumer_id), self.keys.queue_redeliveries(queue)]
        self._scripts["defer"](keys=keys, args=[number, max(0, int(delay * 1000))])

    def inflight_count(self) -> int:
        total = 0
        for queue in self.known_queues():
            members = self.client.zrange(self.keys.queue_consumers(queue), 0, -1)
            for consumer_id in (_text(c) for c in members):
                total += int(self.client.hlen(self.keys.queue_inflight(queue, consumer_id)))
        return total

    # inspection ---------------------------------------------------------------------
    def queues(self) -> list[QueueStats]:
        names = self.known_queues()
        client: Any = self.client  # redis-py's cluster pipeline() is untyped
        pipe = client.pipeline(transaction=False)
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
        purged = 0
        for name in queues:
            levels = [self.keys.level(name, lv) for lv in range(PRIORITY_LEVELS)]
            client: Any = self.client  # redis-py's cluster pipeline() is untyped
            pipe = client.pipeline(transaction=False)
            for key in levels:
                pipe.llen(key)
            pipe.zcard(self.keys.eta(name))
            purged += sum(pipe.execute())
            self.client.delete(*levels, self.keys.eta(name))  # one slot: one DEL
        return purged

    def close(self) -> None:
        if self._coordinator is not None:
            self._coordinator.close()
        links: dict[str, SlotLink] | None = getattr(self._local, "links", None)
        if links and self._local.pid == os.getpid():
            for link in links.values():
                link.close()
        self.router.close()

    # capabilities beside the interface (stores/mailbox.py, eventlog.py, probe.py) ----
    def control_mailbox(self) -> Mailbox:
        from .cluster_mailbox import RedisClusterMailbox

        return RedisClusterMailbox(self)


class RedisClusterConsumer(TransportConsumer):
    """One consuming loop: a raw link per queue (to that queue's shard)."""

    def __init__(
        self,
        transport: RedisClusterTransport,
        queues: Sequence[str],
        consumer_id: str,
        lease_seconds: float,
    ) -> None:
        if not queues:
            raise ValueError("a consumer needs at least one queue")
        self.transport = transport
        self.consumer_id = consumer_id
        keys = transport.keys
        self._queues = list(dict.fromkeys(queues))
        timeout = transport.options.failover_timeout
        self._links = {
            q: SlotLink(
                transport.router, keys.queue(q), CONSUMER_SCRIPTS, timeout,
                report_lost_connections=True,
            )
            for q in self._queues
        }  # fmt: skip
        self._fetch_keys = {
            q: (
                keys.queue_inflight(q, consumer_id),
                keys.queue_consumers(q),
                keys.queue_redeliveries(q),
                *keys.fetch_keys(q, PRIORITY_LEVELS),
            )
            for q in self._queues
        }
        self._lease_seconds = lease_seconds
        self._lease_ms = int(lease_seconds * 1000)
        self._last_tag = 0
        self._turn = 0
        self._stamped = 0.0
        self.carries_results = False

    def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        now = time.monotonic()
        deadline = now + timeout
        if now - self._stamped > self._lease_seconds / 3:
            # fetch.lua stamps the lease in each queue's slot; the concurrency slots go by
            # a lease in the coordination slot, stamped here (a third of a lease apart).
            self.transport.stamp_holders([self.consumer_id], self._lease_seconds)
            self._stamped = now
        n = len(self._queues)
        order = [self._queues[(self._turn + i) % n] for i in range(n)]
        self._turn = (self._turn + 1) % n
        idle_turn = 0
        while True:
            out, until_due = self._fetch_round(order, limit)
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = remaining
            if until_due is not None:
                if until_due <= _REDIS_TICK:
                    time.sleep(max(0.0, min(until_due, remaining)))
                    continue
                wait = min(wait, until_due - _REDIS_TICK)
            queue = order[idle_turn % n]
            idle_turn += 1
            if n > 1:
                wait = min(wait, _POLL_SLICE)
            link = self._links[queue]
            link.call(("BZPOPMIN", self.transport.keys.wake(queue), f"{wait:.3f}"))

    def _fetch_round(self, order: list[str], limit: int) -> tuple[list[Delivery], float | None]:
        """One fetch.lua per queue (each on its shard) until ``limit`` are leased;
        also the seconds until the earliest ETA among them (None: none held)."""
        out: list[Delivery] = []
        until_due: float | None = None
        for queue in order:
            if len(out) >= limit:
                break
            wanted = limit - len(out)
            args = (self.consumer_id, self._lease_ms, wanted, self._last_tag, PRIORITY_LEVELS)
            reply = self._links[queue].script(FETCH, self._fetch_keys[queue], args)
            now_ms, next_eta = reply[0], reply[1]
            if next_eta >= 0:
                due = (next_eta - now_ms) / 1000
                until_due = due if until_due is None else min(until_due, due)
            for i in range(2, len(reply), 5):
                tag, _, level, deliveries, body = reply[i : i + 5]
                self._last_tag = tag
                out.append(Delivery(make_tag(tag, queue), body, queue, level, deliveries))
        return out, until_due

    def ack(self, delivery: Delivery, result: ResultWrite | None = None) -> None:
        number, queue = split_tag(delivery.tag)
        self._links[queue].send((("HDEL", self._fetch_keys[queue][0], number),))

    def release(self, deliveries: Sequence[Delivery]) -> None:
        for queue, numbers in by_queue(d.tag for d in deliveries).items():
            keys = (self._fetch_keys[queue][0], self._fetch_keys[queue][2])
            self._links[queue].script(RELEASE, keys, numbers)

    def recover(self, known_tags: set[str]) -> int:
        lost: list[Delivery] = []
        for queue in self._queues:
            numbers = self._links[queue].call(("HKEYS", self._fetch_keys[queue][0]))
            for number in sorted((_text(t) for t in numbers), key=int):
                tag = make_tag(int(number), queue)
                if tag not in known_tags:
                    lost.append(Delivery(tag, b"", queue, 0))
        if lost:
            self.release(lost)
        return len(lost)

    def flush(self) -> None:
        for link in self._links.values():
            link.drain()

    def close(self) -> None:
        for link in self._links.values():
            link.close()
