"""What conveyor declares on a RabbitMQ vhost, in one place (as redis/keys.py holds
every Redis key): the work queues, the delay levels that hold ETA messages, and the
dead-letter queue. docs/architecture.md, "RabbitMQ", draws it.

Work queues
    One durable queue per conveyor queue, named as the queue. Classic queues carry
    ``x-max-priority: 10``; conveyor's priority 0 is served first and AMQP serves the
    highest first, so level ``p`` is sent as AMQP priority ``9 - p``. With
    ``queue_type="quorum"`` they are quorum queues with ``x-delivery-limit`` (poison
    messages stop coming back) and RabbitMQ dead-letters what passes the limit.

Delay levels (ETA and countdown held in the broker, never in worker memory)
    Level ``k`` (0..30) is a queue whose messages all live ``2**k`` ms
    (``x-message-ttl``) and are then dead-lettered to the headers exchange
    ``conveyor.delay.after.k``. A delay of ``d`` ms passes through the level of each bit
    set in ``d``, highest first, for exactly ``d`` ms in total; each queue is FIFO with one
    TTL, so no message waits behind a later one (the flaw of per-message TTLs). The
    path is written into the message by the producer: it is published straight into its
    highest level, and a header ``conveyor-after-k: j`` tells the exchange after level
    ``k`` to send it to level ``j`` next (``deliver``: to the delivery exchange, a
    headers exchange that routes by ``x-conveyor-queue`` to the work queue, so queue
    names may hold any character). This is kombu 5.5's native delayed delivery for
    quorum queues, with two changes measured on this machine: milliseconds, not
    seconds (due within a few ms), and the path in headers rather than a 28-word topic
    routing key through a chain of 28 exchanges (kombu's way cost ~10 ms of routing per
    message here; a header match per hop costs ~0.1 ms). Delays past 2**31-1 ms (24.8
    days) take the longest path; the consumer sends a message that arrives early
    through the levels again (``x-conveyor-due``).

Dead letters
    ``conveyor.dead-letters``: what RabbitMQ itself gives up on (a quorum queue's
    delivery limit), with its ``x-death`` reason. Dead letters the worker writes (bad
    input, with the reason) go to the coordinator like on every other transport.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_QUEUE",
    "DELAY_LEVELS",
    "DELAY_TOPOLOGY_MARKER",
    "DELIVER",
    "DELIVERY_EXCHANGE",
    "DUE_HEADER",
    "MAX_DELAY_MS",
    "QUEUE_HEADER",
    "after_exchange",
    "after_header",
    "amqp_priority",
    "conveyor_priority",
    "delay_path",
    "delay_queue",
    "work_queue_arguments",
]

DELAY_LEVELS = 31
MAX_DELAY_MS = 2**DELAY_LEVELS - 1
DELIVERY_EXCHANGE = "conveyor.delay.deliver"
DEAD_LETTER_EXCHANGE = "conveyor.dead-letters"
DEAD_LETTER_QUEUE = "conveyor.dead-letters"
QUEUE_HEADER = "x-conveyor-queue"  # where a delayed message goes when due
DUE_HEADER = "x-conveyor-due"  # epoch seconds it is due (an early arrival goes round again)
DELIVERIES_HEADER = "x-conveyor-deliveries"  # deliveries before this copy (classic queues)
MAX_PRIORITY = 9
DELIVER = "deliver"
# Declared last: its presence says the whole delay topology exists (no 500 declarations
# per connection). Bump the version when the topology changes.
DELAY_TOPOLOGY_MARKER = "conveyor.delay.v1"


def amqp_priority(level: int) -> int:
    """conveyor's 0 (served first) .. 9 as AMQP's 9 (served first) .. 0."""
    return MAX_PRIORITY - level


def conveyor_priority(priority: int | None) -> int:
    if priority is None:
        return 0
    return MAX_PRIORITY - min(max(priority, 0), MAX_PRIORITY)


def delay_queue(level: int) -> str:
    return f"conveyor.delay.{level}"


def after_exchange(level: int) -> str:
    """Where a message goes when its time in level ``level`` is up."""
    return f"conveyor.delay.after.{level}"


def after_header(level: int) -> str:
    return f"conveyor-after-{level}"


def delay_path(delay_ms: int) -> tuple[str, dict[str, str]]:
    """The first delay queue for ``delay_ms`` and the headers that route it on."""
    delay_ms = min(max(delay_ms, 1), MAX_DELAY_MS)
    levels = [k for k in range(DELAY_LEVELS - 1, -1, -1) if delay_ms >> k & 1]
    headers = {
        after_header(level): str(following)
        for level, following in zip(levels, [*levels[1:], DELIVER], strict=True)
    }
    return delay_queue(levels[0]), headers


def work_queue_arguments(
    queue_type: str, delivery_limit: int | None
) -> dict[str, Any]:
    """The arguments every work queue is declared with (all declarations of one
    queue must agree, so they are computed here only)."""
    if queue_type == "quorum":
        arguments: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        }
        if delivery_limit is not None:
            arguments["x-delivery-limit"] = delivery_limit
        return arguments
    return {"x-max-priority": MAX_PRIORITY + 1, "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
