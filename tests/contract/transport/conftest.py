"""The transport half runs on RabbitMQ too (``amqp``, a vhost of its own per test on
the suite's node), besides redis, sqlite and memory.

RabbitMQ is a transport only: no leases (``test_leases.py`` and the co-located settle of
``test_settle.py`` keep to the leasing kinds, by their own ``kind`` fixture), and no
result backend or coordinator at its URL. What AMQP cannot report is marked per test
with ``AMQP_CANNOT`` (a strict xfail: it fails the day it starts to pass).
"""

from __future__ import annotations

import pytest

from ..conftest import KINDS

TRANSPORT_KINDS = [*KINDS, "amqp"]

# Per-queue counts of scheduled messages and of messages by priority: ETA messages wait
# in RabbitMQ's delay levels, shared by all queues (counted together by
# scheduled_total()), and AMQP reports a queue's depth only (docs/architecture.md,
# "RabbitMQ"). Purge does reach scheduled messages: it reads the levels through.
AMQP_CANNOT = "AMQP reports no per-queue scheduled or per-priority counts"


@pytest.fixture(params=TRANSPORT_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "amqp" and request.node.get_closest_marker("amqp_cannot"):
        request.applymarker(pytest.mark.xfail(strict=True, reason=AMQP_CANNOT))
    return name
