"""Huey on Redis (``RedisHuey``), process workers.

``notify_result=True`` is Huey's documented option for waking a waiting ``get()`` with
BLPOP instead of polling; ``store_none=True`` so a task returning None stores a result
like every other peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from huey import RedisHuey

from counter import bump, redis_url
from peers.base import Peer, executable

huey = RedisHuey("peerbench", url=redis_url(), notify_result=True, store_none=True)


@huey.task()
def noop(i: int) -> None:
    bump()


PEER = Peer(
    name="huey",
    version_of="huey",
    worker=lambda n: [
        executable("huey_consumer"),
        "peers.huey.huey",
        "-w",
        str(n),
        "-k",
        "process",
        "-q",
    ],
    concurrency="`huey_consumer -w 2 -k process`: two worker processes",
)


class _Client:
    def send(self, i: int) -> Any:
        return noop(i)

    def send_many(self, args: Sequence[tuple[int]]) -> None:
        noop.map(args)  # Huey's map() enqueues one by one

    def wait(self, handle: Any, timeout: float) -> None:
        handle.get(blocking=True, timeout=timeout)


def client() -> _Client:
    return _Client()
