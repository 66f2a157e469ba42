"""Celery 5 on Redis (broker and backend): prefork pool, ``-c 2``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, group

from counter import bump, redis_url
from peers.base import Peer, executable

app = Celery("peerbench", broker=redis_url(), backend=redis_url())
app.conf.broker_connection_retry_on_startup = True  # silences a startup warning only


@app.task
def noop(i: int) -> None:
    bump()


PEER = Peer(
    name="celery",
    version_of="celery",
    worker=lambda n: [
        executable("celery"),
        "-A",
        "peers.celery",
        "worker",
        "-P",
        "prefork",
        "-c",
        str(n),
        "-l",
        "warning",
    ],
    concurrency="`worker -P prefork -c 2`: two child processes fed by the parent",
)


class _Client:
    def send(self, i: int) -> Any:
        return noop.delay(i)

    def send_many(self, args: Sequence[tuple[int]]) -> None:
        group(noop.s(*a) for a in args).apply_async()  # Celery's only multi-task send

    def wait(self, handle: Any, timeout: float) -> None:
        handle.get(timeout=timeout)


def client() -> _Client:
    return _Client()
