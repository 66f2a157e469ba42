"""Coordination on Redis: beat's leader lease and schedule state, unique sends, the
shared rate limiter, concurrency slots, revocations, the worker registry and dead
letters. Each step is one command or one script:

    hold_lease       lease.lua            SET NX PX, or PEXPIRE when the owner renews
    drop_lease       lease_drop.lua       DEL only if the owner still holds it
    publish_unique   enqueue_unique.lua   SET NX the key with the first task id, and queue
    claim_unique     claim_unique.lua     the same claim, apart from a Redis transport
    acquire_rate     rate.lua             GCRA on <p>:rate:<task>, slot kept by <p>:ratehold:<id>
    acquire_slot     slot.lua             SADD to <p>:slots:<key> unless full of live holders
    revoke           revoke.lua           ZADD ids with their expiry, bump the version
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..coordination import Coordinator, DeadLetter, Revocations
from ..eventlog import EventLog, EventLogStore
from ..mailbox import Mailbox, MailboxStore
from ..transport import priority_level
from .connection import (
    CONNECTION_ERRORS,
    RedisClient,
    RedisLink,
    Script,
    load_script,
    pool_from_url,
)
from .connection import text as _text
from .keys import RedisKeys

if TYPE_CHECKING:
    from redis.connection import ConnectionPool

    from ..transport import Transport


__all__ = ["RedisCoordinator"]

_PACKAGE = "conveyor.stores.redis"
LEASE = load_script(_PACKAGE, "lease")
LEASE_DROP = load_script(_PACKAGE, "lease_drop")
ENQUEUE_UNIQUE = load_script(_PACKAGE, "enqueue_unique")
CLAIM_UNIQUE = load_script(_PACKAGE, "claim_unique")
RATE = load_script(_PACKAGE, "rate")
SLOT = load_script(_PACKAGE, "slot")
RENEW = load_script(_PACKAGE, "renew")
REVOKE = load_script(_PACKAGE, "revoke")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _dead_letter(raw: Any) -> DeadLetter:
    record = json.loads(raw)
    return DeadLetter(
        id=record["id"],
        queue=record["queue"],
        reason=record["reason"],
        time=record["time"],
        body=record["body"].encode("latin-1"),
    )


class RedisCoordinator(Coordinator, MailboxStore, EventLogStore):
    """Every coordination interface on one Redis.

    ``transport`` is the Redis transport on the same keys when this coordinator was made
    by it (the default): then unique sends queue in the same script, and slots check
    that their delivery is still in flight. Without it the coordinator stands apart:
    it keeps its own consumer leases for slots (:meth:`renew_holders`)."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "conveyor",
        pool: ConnectionPool | None = None,
        transport: Transport | None = None,
        transport_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.keys = RedisKeys(key_prefix)
        self.pool = (
            pool
            if pool is not None
            else pool_from_url(url, transport_options, role="the coordinator")
        )
        self._owns_pool = pool is None
        self.client = RedisClient(connection_pool=self.pool)
        self._transport = transport
        self._local = threading.local()
        self._announced: set[str] = set()

    def _link(self) -> RedisLink:
        # A raw link per thread and process (a forked child never writes on its
        # parent's socket); the scripts load on first use (EVALSHA falls back to EVAL).
        link: RedisLink | None = getattr(self._local, "link", None)
        if link is None or self._local.pid != os.getpid():
            link = RedisLink(self.pool)
            self._local.link = link
            self._local.pid = os.getpid()
        return link

    def _run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return self._link().script(script, keys, args)
        except CONNECTION_ERRORS:
            return self._link().script(script, keys, args)  # one reconnect, then raise

    # leases (beat's leader) -----------------------------------------------------------
    def hold_lease(self, name: str, owner: str, ttl: float) -> bool:
        return bool(self._run(LEASE, (self.keys.lease(name),), (owner, _ms(ttl))))

    def drop_lease(self, name: str, owner: str) -> None:
        self._run(LEASE_DROP, (self.keys.lease(name),), (owner,))

    def lease_owner(self, name: str) -> str | None:
        owner = self.client.get(self.keys.lease(name))
        return _text(owner) if owner is not None else None

    # beat's schedule state --------------------------------------------------------------
    def schedule_state(self, names: Sequence[str]) -> dict[str, float]:
        if not names:
            return {}
        values = self.client.hmget(self.keys.schedule_state, list(names))
        return {n: float(v) for n, v in zip(names, values, strict=True) if v is not None}

    def record_schedule_state(self, ticks: dict[str, float]) -> None:
        if ticks:
            mapping: dict[Any, Any] = {n: repr(float(t)) for n, t in ticks.items()}
            self.client.hset(self.keys.schedule_state, mapping=mapping)

    # unique sends -----------------------------------------------------------------------
    def claim_unique(self, key: str, task_id: str, ttl: float) -> str | None:
        first = _text(self._run(CLAIM_UNIQUE, (self.keys.unique(key),), (task_id, _ms(ttl))))
        return first or None

    def drop_unique(self, key: str, task_id: str) -> None:
        self._run(LEASE_DROP, (self.keys.unique(key),), (task_id,))  # compare-and-delete

    def publish_unique(
        self,
        transport: Transport,
        queue: str,
        body: bytes,
        *,
        key: str,
        task_id: str,
        ttl: float,
        priority: int = 0,
        countdown: float | None = None,
        eta: float | None = None,
    ) -> str | None:
        if transport is not self._transport:  # apart: claim, then publish over there
            return super().publish_unique(
                transport, queue, body, key=key, task_id=task_id, ttl=ttl,
                priority=priority, countdown=countdown, eta=eta,
            )  # fmt: skip
        priority = priority_level(priority)
        where = self.keys.enqueue_keys(queue, priority)
        keys = (*where, self.keys.unique(key), self.keys.queues)
        args = (
            "" if queue in self._announced else queue,
            priority,
            -1 if countdown is None else max(0, int(countdown * 1000)),
            -1 if eta is None else int(eta * 1000),
            task_id,
            _ms(ttl),
            body,
        )
        first = _text(self._run(ENQUEUE_UNIQUE, keys, args))
        self._announced.add(queue)
        return first or None

    # rate limits ------------------------------------------------------------------------
    def acquire_rate(self, name: str, per_second: float, reservation: str) -> float:
        keys = (self.keys.rate(name), self.keys.rate_hold(reservation))
        wait_ms = self._run(RATE, keys, (repr(1000.0 / per_second),))
        return int(wait_ms) / 1000.0

    def set_rate_limit(self, name: str, rate: str | None) -> None:
        if rate is None:
            self.client.hdel(self.keys.rate_limits, name)
        else:
            self.client.hset(self.keys.rate_limits, name, rate)

    def rate_limits(self) -> dict[str, str]:
        raw = self.client.hgetall(self.keys.rate_limits)
        return {_text(k): _text(v) for k, v in raw.items()}

    # concurrency slots ------------------------------------------------------------------
    def acquire_slot(self, key: str, limit: int, consumer_id: str, tag: str) -> bool:
        keys = (self.keys.slots(key), self.keys.consumers)
        in_flight_here = "1" if self._transport is not None else "0"
        args = (limit, f"{consumer_id}\n{tag}", self.keys.prefix, in_flight_here)
        return bool(self._run(SLOT, keys, args))

    def release_slot(self, key: str, consumer_id: str, tag: str) -> None:
        self.client.srem(self.keys.slots(key), f"{consumer_id}\n{tag}")

    def renew_holders(self, consumer_ids: Sequence[str], lease_seconds: float) -> None:
        if self._transport is None and consumer_ids:  # same store: the transport renews
            self._run(RENEW, (self.keys.consumers,), (_ms(lease_seconds), *consumer_ids))

    # revocations ------------------------------------------------------------------------
    def revoke(self, task_ids: Sequence[str], ttl: float, terminate: str | None = None) -> None:
        if task_ids:
            keys = (self.keys.revoked, self.keys.revoked_terminate, self.keys.revoked_version)
            self._run(REVOKE, keys, (_ms(ttl), terminate or "", *task_ids))

    def revocations(self, known_version: int) -> Revocations | None:
        keys = self.keys
        raw = self.client.get(keys.revoked_version)
        version = int(raw) if raw is not None else 0
        if version == known_version:
            return None
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrangebyscore(keys.revoked, now_ms, "+inf")
        pipe.hgetall(keys.revoked_terminate)
        pipe.get(keys.revoked_version)
        ids, terminate, raw = pipe.execute()
        revoked = frozenset(_text(i) for i in ids)
        signals = {_text(k): _text(v) for k, v in terminate.items() if _text(k) in revoked}
        return Revocations(int(raw or 0), revoked, signals)

    # the worker registry --------------------------------------------------------------
    def announce_worker(self, name: str, info: dict[str, Any], ttl: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {name: int(time.time() * 1000)})
        pipe.set(self.keys.worker(name), json.dumps(info), px=int(ttl * 1000))
        pipe.execute()

    def retire_worker(self, name: str) -> None:
        self.client.zrem(self.keys.workers, name)
        self.client.delete(self.keys.worker(name))

    def workers(self) -> list[dict[str, Any]]:
        names = [_text(n) for n in self.client.zrange(self.keys.workers, 0, -1)]
        if not names:
            return []
        infos = self.client.mget([self.keys.worker(n) for n in names])
        alive = []
        for name, raw in zip(names, infos, strict=True):
            if raw is None:
                self.client.zrem(self.keys.workers, name)  # heartbeat expired
                continue
            alive.append(json.loads(raw))
        return alive

    # dead letters -----------------------------------------------------------------------
    def dead_letter(self, body: bytes, queue: str, reason: str) -> None:
        letter_id = uuid.uuid4().hex
        record = {
            "id": letter_id,
            "queue": queue,
            "reason": reason,
            "time": time.time(),
            "body": body.decode("latin-1"),  # any bytes, losslessly, inside JSON
        }
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.dead_letter_records, letter_id, json.dumps(record))
        pipe.lpush(self.keys.dead_letters, letter_id)
        pipe.execute()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        ids = [_text(i) for i in self.client.lrange(self.keys.dead_letters, 0, limit - 1)]
        if not ids:
            return []
        records = self.client.hmget(self.keys.dead_letter_records, ids)
        return [_dead_letter(raw) for raw in records if raw is not None]

    def dead_letter_by_id(self, letter_id: str) -> DeadLetter | None:
        raw = self.client.hget(self.keys.dead_letter_records, letter_id)
        return _dead_letter(raw) if raw is not None else None

    def remove_dead_letters(self, letter_ids: Sequence[str] | None = None) -> int:
        keys = self.keys
        if letter_ids is None:
            pipe = self.client.pipeline(transaction=True)
            pipe.llen(keys.dead_letters)
            pipe.delete(keys.dead_letters, keys.dead_letter_records)
            count, _ = pipe.execute()
            return int(count)
        pipe = self.client.pipeline(transaction=True)
        for letter_id in letter_ids:
            pipe.lrem(keys.dead_letters, 0, letter_id)
        pipe.hdel(keys.dead_letter_records, *letter_ids)
        return int(pipe.execute()[-1]) if letter_ids else 0

    def close(self) -> None:
        link: RedisLink | None = getattr(self._local, "link", None)
        if link is not None and self._local.pid == os.getpid():
            link.close()
        if self._owns_pool:
            self.pool.disconnect()

    # capabilities beside the interface (stores/mailbox.py, eventlog.py, probe.py) ----
    def control_mailbox(self) -> Mailbox:
        from .mailbox import RedisMailbox

        return RedisMailbox(self)

    def event_log(self) -> EventLog:
        from .eventlog import RedisEventLog

        return RedisEventLog(self)
