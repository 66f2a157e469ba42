"""conveyor on Redis: prefork pool, ``-c 2`` = two child processes, one task at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor import Conveyor
from counter import bump, redis_url
from peers.base import Peer, executable

app = Conveyor("peerbench", broker=redis_url(), backend=redis_url())


@app.task
def noop(i: int) -> None:
    bump()


PEER = Peer(
    name="conveyor",
    version_of="conveyor",
    worker=lambda n: [
        executable("conveyor"),
        "-A",
        "peers.conveyor",
        "worker",
        "-P",
        "prefork",
        "-c",
        str(n),
        "-l",
        "warning",
    ],
    concurrency="`worker -P prefork -c 2`: two child processes, one task at a time each",
)


class _Client:
    def send(self, i: int) -> Any:
        return noop.delay(i)

    def send_many(self, args: Sequence[tuple[int]]) -> None:
        noop.delay_many(args)

    def wait(self, handle: Any, timeout: float) -> None:
        handle.get(timeout=timeout)


def client() -> _Client:
    return _Client()
