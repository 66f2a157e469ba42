"""What the transport half of the contract suite shares: a consumer in one call, the
bodies of deliveries, everything waiting now, and the leases capability."""

from __future__ import annotations

import time
from collections.abc import Callable

from conveyor.stores.transport import (
    Delivery,
    LeasedDeliveries,
    Transport,
    TransportConsumer,
    leases_of,
    require_leases,
)

LEASE = 10.0


def leased(transport: Transport) -> LeasedDeliveries:
    """``transport``'s leases (every transport in this suite has them)."""
    return require_leases(transport, "the contract suite")


def give_back(transport: Transport, consumer: TransportConsumer) -> int:
    """How many messages ``consumer`` still holds, given back now: by reclaiming its
    leases, or (a transport without leases: AMQP) by closing its connection and counting
    what a fresh consumer receives."""
    leases = leases_of(transport)
    if leases is not None:
        return leases.reclaim(consumer.consumer_id)
    consumer.close()
    returned = fetch_all(transport.consumer(["q"], f"{consumer.consumer_id}-after", LEASE))
    return len(returned)


def consume(
    transport: Transport, name: str = "c1", queues: tuple[str, ...] = ("q",), lease: float = LEASE
) -> TransportConsumer:
    return transport.consumer(list(queues), name, lease)


def bodies(deliveries: list[Delivery]) -> list[bytes]:
    return [d.body for d in deliveries]


def fetch_all(consumer: TransportConsumer, limit: int = 100) -> list[Delivery]:
    """Everything waiting now (fetch returns at most ``limit`` per call)."""
    out: list[Delivery] = []
    while True:
        got = consumer.fetch(limit, 0)
        if not got:
            return out
        out.extend(got)


def timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started
