"""Every Redis key conveyor uses, in one place (documented in docs/architecture.md).

``<p>`` is the ``redis_key_prefix`` setting (default ``conveyor``), so several apps can
share one Redis database without seeing each other's queues.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClusterKeys", "RedisKeys", "coordination_prefix"]


def _check_queue_name(name: str) -> None:
    if not name:
        raise ValueError("a queue name cannot be empty")
    if "\n" in name:
        raise ValueError("a queue name cannot contain a newline")


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str = "conveyor"

    def queue(self, name: str) -> str:
        """Base key of a queue: ``<p>:queue:<name>``. Its parts, built by the Lua scripts:
        ``<base>:<0-9>`` a list per priority level (LPUSH in, RPOP out: FIFO),
        ``<base>:eta`` a zset of messages not yet due (score = due ms),
        ``<base>:wake`` a one-member zset consumers block on (BZPOPMIN) when idle."""
        _check_queue_name(name)
        return f"{self.prefix}:queue:{name}"

    def level(self, name: str, priority: int) -> str:
        return f"{self.queue(name)}:{priority}"

    def eta(self, name: str) -> str:
        return f"{self.queue(name)}:eta"

    def wake(self, name: str) -> str:
        return f"{self.queue(name)}:wake"

    def enqueue_keys(self, name: str, level: int) -> tuple[str, str, str]:
        """What enqueue.lua writes, declared (KEYS): the level list, ETA zset, wake zset."""
        return self.level(name, level), self.eta(name), self.wake(name)

    def fetch_keys(self, name: str, levels: int) -> tuple[str, ...]:
        """What fetch.lua touches of one queue, declared (KEYS): its ETA zset, its wake
        zset, then each level's list."""
        return (self.eta(name), self.wake(name), *(self.level(name, lv) for lv in range(levels)))

    @property
    def queues(self) -> str:
        """Set of every queue name ever published to."""
        return f"{self.prefix}:queues"

    @property
    def consumers(self) -> str:
        """Zset of consumer leases: member = consumer id, score = lease deadline (ms)."""
        return f"{self.prefix}:consumers"

    def inflight(self, consumer_id: str) -> str:
        """Hash of one consumer's leased messages: tag -> list key, deliveries, body."""
        return f"{self.prefix}:inflight:{consumer_id}"

    @property
    def redeliveries(self) -> str:
        """Hash sha1(body) -> deliveries, for messages put back after a consumer died."""
        return f"{self.prefix}:redeliveries"

    @property
    def dead_letters(self) -> str:
        """List of dead-letter ids, newest first."""
        return f"{self.prefix}:dlq"

    @property
    def dead_letter_records(self) -> str:
        """Hash dead-letter id -> JSON record (queue, reason, time, body)."""
        return f"{self.prefix}:dlq:records"

    @property
    def workers(self) -> str:
        """Zset of workers: member = worker name, score = last heartbeat (ms)."""
        return f"{self.prefix}:workers"

    def worker(self, name: str) -> str:
        """JSON description of one worker, expiring with its heartbeat."""
        return f"{self.prefix}:worker:{name}"

    # result backend ---------------------------------------------------------------------
    def result(self, task_id: str) -> str:
        """List holding a task's final meta (one element, so waiters can BLMOVE on it)."""
        return f"{self.prefix}:result:{task_id}"

    def state(self, task_id: str) -> str:
        """String holding a task's interim meta (RECEIVED, STARTED, RETRY, custom)."""
        return f"{self.prefix}:state:{task_id}"

    def chord(self, chord_id: str) -> str:
        """Hash describing a chord: size, members (JSON ids in order), the body message,
        and where to queue it (queue, level list key, wake key) when the broker is here."""
        return f"{self.prefix}:chord:{chord_id}"

    def chord_done(self, chord_id: str) -> str:
        """Set of a chord's header task ids whose final result is stored (SCARD = count)."""
        return f"{self.prefix}:chord:{chord_id}:done"

    # revocation ---------------------------------------------------------------------------
    @property
    def revoked(self) -> str:
        """Zset of revoked task ids; score = when the revocation expires (ms)."""
        return f"{self.prefix}:revoked"

    @property
    def revoked_terminate(self) -> str:
        """Hash task id -> signal name, for revocations that stop a running task."""
        return f"{self.prefix}:revoked:terminate"

    @property
    def revoked_version(self) -> str:
        """Counter bumped by every revoke, so workers re-read the set only when it changed."""
        return f"{self.prefix}:revoked:version"

    # scheduling and flow control -----------------------------------------------------------
    def lease(self, name: str) -> str:
        """String holding the owner of a named lease (beat's leader), expiring with it."""
        return f"{self.prefix}:lease:{name}"

    @property
    def schedule_state(self) -> str:
        """Hash periodic entry name -> its last tick (epoch seconds), written by beat."""
        return f"{self.prefix}:beat:last"

    def unique(self, key: str) -> str:
        """String holding the id of the first task sent with an idempotency key (TTL)."""
        return f"{self.prefix}:unique:{key}"

    def rate(self, name: str) -> str:
        """String: the GCRA theoretical arrival time (ms) of a task's rate limit."""
        return f"{self.prefix}:rate:{name}"

    def rate_hold(self, task_id: str) -> str:
        """String set while a deferred message holds a reserved rate-limit slot."""
        return f"{self.prefix}:ratehold:{task_id}"

    @property
    def rate_limits(self) -> str:
        """Hash task name -> rate string set at run time (``app.control.rate_limit``)."""
        return f"{self.prefix}:ratelimits"

    def slots(self, key: str) -> str:
        """Set of the holders ("<consumer>\\n<tag>") of a concurrency limit's slots."""
        return f"{self.prefix}:slots:{key}"

    # control mailbox and events (observe) ------------------------------------------------
    def inbox(self, worker: str) -> str:
        """List of control commands for one worker (JSON), oldest first; expires."""
        return f"{self.prefix}:control:{worker}"

    def replies(self, reply_id: str) -> str:
        """List of the answers to one control command (JSON); expires."""
        return f"{self.prefix}:reply:{reply_id}"

    @property
    def events(self) -> str:
        """Stream of task and worker events: an entry per flushed batch (JSON lines),
        capped by ``append_events.lua``."""
        return f"{self.prefix}:events"


def coordination_prefix(prefix: str) -> str:
    """The key prefix of coordination state on a Redis Cluster: ``<p>:{<p>}``. The hash
    tag puts every coordination key (leases, limits, slots and their holders, unique
    claims, revocations, the worker registry, dead letters) in one slot, so each of
    their scripts is single-slot; it is little data and little traffic."""
    return f"{prefix}:{{{prefix}}}"


@dataclass(frozen=True, slots=True)
class ClusterKeys(RedisKeys):
    """The key layout on a Redis Cluster, where each script must touch one hash slot.

    A queue and everything a consumer holds of it share the queue's hash tag
    ``{q:<name>}``, so queues spread across shards and each queue script stays on one:

        <p>:{q:<name>}:<0-9> / :eta / :wake       as ``queue()`` on one Redis
        <p>:{q:<name>}:inflight:<consumer>        what a consumer leased from this queue
        <p>:{q:<name>}:consumers                  leases of the consumers of this queue
        <p>:{q:<name>}:redeliveries               delivery counts of requeued messages

    A task's result and interim state share ``{t:<id>}``; a chord's hash and done set
    share ``{c:<id>}``. (A name holding ``}`` still gives one tag per queue: Redis hashes
    up to the first ``}``, which is the same place in every key of that queue.)"""

    def queue(self, name: str) -> str:
        _check_queue_name(name)
        return f"{self.prefix}:{{q:{name}}}"

    def queue_inflight(self, name: str, consumer_id: str) -> str:
        return f"{self.queue(name)}:inflight:{consumer_id}"

    def queue_consumers(self, name: str) -> str:
        return f"{self.queue(name)}:consumers"

    def queue_redeliveries(self, name: str) -> str:
        return f"{self.queue(name)}:redeliveries"

    def result(self, task_id: str) -> str:
        return f"{self.prefix}:result:{{t:{task_id}}}"

    def state(self, task_id: str) -> str:
        return f"{self.prefix}:state:{{t:{task_id}}}"

    def chord(self, chord_id: str) -> str:
        return f"{self.prefix}:chord:{{c:{chord_id}}}"

    def chord_done(self, chord_id: str) -> str:
        return f"{self.prefix}:chord:{{c:{chord_id}}}:done"
