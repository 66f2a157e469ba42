"""A test app for the Sentinel and Cluster tests: the broker comes from
CONVEYOR_BROKER_URL (a sentinel:// or redis+cluster:// URL), its transport options from
TEST_TRANSPORT_OPTIONS (JSON), and tasks record their runs on a plain Redis of the
suite's own (TEST_SIDE_URL), which no failover touches, so lost and duplicated runs can
be counted.
"""

from __future__ import annotations

import json
import os
import time

import redis

from conveyor import Conveyor

app = Conveyor("tests.apps.failover")
if "TEST_TRANSPORT_OPTIONS" in os.environ:
    app.conf.broker_transport_options = json.loads(os.environ["TEST_TRANSPORT_OPTIONS"])

_client: redis.Redis | None = None


def side_channel() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["TEST_SIDE_URL"])
    return _client


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mark(key: str, n: int, sleep: float = 0.0) -> int:
    """Count the runs of item ``n`` of batch ``key`` (HINCRBY: duplicates show as 2)."""
    if sleep:
        time.sleep(sleep)
    side_channel().hincrby(f"runs:{key}", str(n), 1)
    return n
