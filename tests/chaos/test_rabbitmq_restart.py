"""RabbitMQ restarted (kill -9, then started again) while workers run and a producer
sends: every task whose ``.delay()`` returned runs and stores its result; the workers
and the producer go on by themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conveyor.exceptions import BrokerUnavailable

from ..apps import amqp_seed
from ..support import wait_for
from ..support_rabbitmq import RabbitNode

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

APP = "tests.apps.amqp_seed"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RabbitNode]:
    node = RabbitNode(tmp_path)
    node.start()
    try:
        yield node
    finally:
        node.close()


def test_node_killed_and_restarted_under_load_loses_no_task(
    node: RabbitNode, redis_url: str, spawn_worker: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "CONVEYOR_BROKER_URL": node.url,
        "CONVEYOR_RESULT_BACKEND": redis_url,
        "AMQP_SIDE_URL": redis_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = amqp_seed.app
    app.conf.broker_url, app.conf.result_backend = node.url, redis_url
    spawn_worker(APP, node.url, "-c", "2", env=env)
    sent: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set() and len(sent) < 400:
            try:
                sent.append(amqp_seed.record.delay("restart", 0.01).id)
            except BrokerUnavailable:
                time.sleep(0.05)  # not sent: nothing to count

    producer = threading.Thread(target=produce)
    producer.start()
    side = redis.Redis.from_url(redis_url)
    wait_for(lambda: side.llen("done:restart") >= 50, 60, what="tasks before the restart")
    node.restart(crash=True)
    before = len(sent)
    wait_for(lambda: len(sent) >= before + 50 or len(sent) >= 400, 90,
             what="sends after the restart")
    stop.set()
    producer.join(60)
    done = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        done = {d.decode() for d in side.lrange("done:restart", 0, -1)}
        if done >= set(sent):
            break
        time.sleep(0.5)
    missing = set(sent) - done
    assert not missing, f"{len(missing)} of {len(sent)} sent tasks never ran"
    states = {app.AsyncResult(task_id).state for task_id in sent}
    assert states == {"SUCCESS"}
    app.close()
