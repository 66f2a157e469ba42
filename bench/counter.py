"""The task body shared by both task modules: one INCR on a counter key.

The Redis URL comes from the BENCH_REDIS_URL environment variable (set by run.py);
there is deliberately no default, so nothing ever touches a Redis by accident.
"""

from __future__ import annotations

import os

import redis

COUNTER_KEY = "bench:counter"


def broker_url(framework: str) -> str:
    """The broker: the private Redis, or with ``run.py --rabbitmq`` a vhost of the
    private RabbitMQ node per framework (Celery and conveyor declare their queues
    with different arguments, so they must not share one)."""
    return os.environ.get(f"BENCH_BROKER_URL_{framework.upper()}") or redis_url()


def redis_url() -> str:
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        raise RuntimeError("BENCH_REDIS_URL is not set (bench/run.py sets it)")
    return url


_client: redis.Redis | None = None
_client_pid = 0


def client() -> redis.Redis:
    """A Redis client created lazily, once per process (so after any fork)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(redis_url())
        _client_pid = os.getpid()
    return _client


def bump() -> None:
    client().incr(COUNTER_KEY)
