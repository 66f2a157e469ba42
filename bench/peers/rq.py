"""RQ on Redis: ``rq worker-pool -n 2``, the default Worker class, which forks a fresh
work horse process for every job (RQ's isolation model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq import Queue

from counter import bump, redis_url
from peers.base import Peer, executable


def noop(i: int) -> None:
    bump()


PEER = Peer(
    name="rq",
    version_of="rq",
    worker=lambda n: [
        executable("rq"),
        "worker-pool",
        "-n",
        str(n),
        "-u",
        redis_url(),
        "-q",
        "default",
    ],
    concurrency="`rq worker-pool -n 2`: two workers, each forking a work horse per job",
)


class _Client:
    def __init__(self) -> None:
        self.queue = Queue("default", connection=Redis.from_url(redis_url()))

    def send(self, i: int) -> Any:
        return self.queue.enqueue(noop, i)

    def send_many(self, args: Sequence[tuple[int]]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(noop, a) for a in args])

    def wait(self, handle: Any, timeout: float) -> None:
        if handle.latest_result(timeout=max(1, round(timeout))) is None:
            raise TimeoutError(f"no result for job {handle.id} in {timeout} s")


def client() -> _Client:
    return _Client()
