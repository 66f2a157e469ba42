"""Scheduling and flow control on Redis: beat's leader lease and schedule state, unique
sends, the shared rate limiter, concurrency slots and deferral. Mixed into
:class:`~conveyor.stores.redis.transport.RedisBroker`; each step is one command or one script:

    hold_lease       lease.lua            SET NX PX, or PEXPIRE when the owner renews
    drop_lease       lease_drop.lua       DEL only if the owner still holds it
    publish_unique   enqueue_unique.lua   SET NX the key with the first task id, and queue
    acquire_rate     rate.lua             GCRA on <p>:rate:<task>, slot kept by <p>:ratehold:<id>
    acquire_slot     slot.lua             SADD to <p>:slots:<key> unless full of live holders
    defer            defer.lua            in-flight record -> the queue's ETA set
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from ..transport import Delivery, priority_level
from .connection import Script, load_script
from .connection import text as _text

if TYPE_CHECKING:
    from .connection import RedisLink
    from .keys import RedisKeys

__all__ = ["RedisFlowControl"]

_PACKAGE = "conveyor.stores.redis"
LEASE = load_script(_PACKAGE, "lease")
LEASE_DROP = load_script(_PACKAGE, "lease_drop")
ENQUEUE_UNIQUE = load_script(_PACKAGE, "enqueue_unique")
RATE = load_script(_PACKAGE, "rate")
SLOT = load_script(_PACKAGE, "slot")
DEFER = load_script(_PACKAGE, "defer")

_RETRY = (redis.ConnectionError, redis.TimeoutError, OSError)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisFlowControl:
    """The flow-control half of the Redis broker (see the module docstring)."""

    if TYPE_CHECKING:
        keys: RedisKeys
        client: redis.Redis
        _announced: set[str]

        def _link(self) -> RedisLink: ...

    def _run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return self._link().script(script, keys, args)
        except _RETRY:
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
    def publish_unique(
        self,
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
        priority = priority_level(priority)
        keys = (self.keys.queue(queue), self.keys.queues, self.keys.unique(key))
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
        args = (limit, f"{consumer_id}\n{tag}", self.keys.prefix)
        return bool(self._run(SLOT, keys, args))

    def release_slot(self, key: str, consumer_id: str, tag: str) -> None:
        self.client.srem(self.keys.slots(key), f"{consumer_id}\n{tag}")

    # deferral ---------------------------------------------------------------------------
    def defer(self, consumer_id: str, delivery: Delivery, delay: float) -> None:
        keys = (self.keys.inflight(consumer_id), self.keys.redeliveries)
        self._run(DEFER, keys, (delivery.tag, max(0, int(delay * 1000))))
