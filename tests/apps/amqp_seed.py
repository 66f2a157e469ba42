"""A Celery app as its users write it for RabbitMQ, with one import changed
(``from celery import Celery`` -> ``from conveyor import Celery``).

The broker comes from CONVEYOR_BROKER_URL (an amqp:// vhost of the suite's node), the
results from CONVEYOR_RESULT_BACKEND (the suite's Redis), which also holds coordination
and the side channel where tasks record their runs (AMQP_SIDE_URL).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time

import redis

from conveyor import Celery

app = Celery(
    "tests.apps.amqp_seed",
    broker=os.environ.get("CONVEYOR_BROKER_URL", "amqp://guest:guest@localhost:5672//"),
    backend=os.environ.get("CONVEYOR_RESULT_BACKEND"),
)
app.conf.update(
    task_acks_late=True,
    broker_heartbeat=10,
    broker_connection_retry_on_startup=True,
)

# amqps:// with a client certificate: Celery's broker_use_ssl for py-amqp, read from the
# directory the TLS test writes (ca.pem, client.pem, client.key).
if os.environ.get("AMQP_TLS_DIR"):
    _tls = os.environ["AMQP_TLS_DIR"]
    app.conf.broker_use_ssl = {
        "ca_certs": f"{_tls}/ca.pem",
        "certfile": f"{_tls}/client.pem",
        "keyfile": f"{_tls}/client.key",
        "cert_reqs": ssl.CERT_REQUIRED,
    }

_side: redis.Redis | None = None


def side() -> redis.Redis:
    global _side
    if _side is None:
        _side = redis.Redis.from_url(os.environ["AMQP_SIDE_URL"])
    return _side


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0.01)
    return x + y


@app.task(bind=True)
def record(self, key: str, sleep: float = 0.0) -> str:  # type: ignore[no-untyped-def]
    """Count each run of this task id (to detect duplicates), then sleep."""
    side().hincrby(f"runs:{key}", self.request.id, 1)
    if sleep:
        time.sleep(sleep)
    side().rpush(f"done:{key}", self.request.id)
    return str(self.request.id)


@app.task(bind=True, time_limit=1)
def overrun(self, key: str) -> None:  # type: ignore[no-untyped-def]
    """Runs past its hard time limit: the prefork supervisor kills its child."""
    side().hincrby(f"runs:{key}", self.request.id, 1)
    time.sleep(30)
