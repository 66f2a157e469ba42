"""Dramatiq on Redis with its Results middleware (Redis result backend).

``--processes 2``: two processes with Dramatiq's default 8 worker threads each (with
``--threads 1``, the prefork peers' concurrency, it drained ~500 tasks/s in a trial
run: its consumer thread and one worker thread hand messages over a queue).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from counter import bump, redis_url
from peers.base import Peer, executable

broker = RedisBroker(url=redis_url())
broker.add_middleware(Results(backend=RedisBackend(url=redis_url())))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def noop(i: int) -> None:
    bump()


PEER = Peer(
    name="dramatiq",
    version_of="dramatiq",
    worker=lambda n: [
        executable("dramatiq"),
        "peers.dramatiq",
        "--processes",
        str(n),
    ],
    concurrency="`--processes 2`: two processes, 8 worker threads each (the default)",
)


class _Client:
    def send(self, i: int) -> Any:
        return noop.send(i)

    def send_many(self, args: Sequence[tuple[int]]) -> None:
        for a in args:  # no bulk enqueue: group().run() is the same loop
            noop.send(*a)

    def wait(self, handle: Any, timeout: float) -> None:
        handle.get_result(block=True, timeout=int(timeout * 1000))


def client() -> _Client:
    return _Client()
