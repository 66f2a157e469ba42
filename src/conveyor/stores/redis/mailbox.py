"""The control mailbox on Redis: a list per worker inbox, a list per reply id.

    post     RPUSH <p>:control:<worker> + PEXPIRE, pipelined for every worker
    take     LPOP <p>:control:<worker> <limit>      (non-blocking)
    answer   RPUSH <p>:reply:<id> + PEXPIRE
    collect  BLPOP <p>:reply:<id> until the answers came or the timeout passed
    held     HGETALL <p>:inflight:<consumer>        (the consumer's leases, fetch.lua)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..mailbox import Mailbox
from .connection import text

if TYPE_CHECKING:
    from .coordination import RedisCoordinator
    from .transport import RedisTransport

__all__ = ["RedisMailbox"]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisMailbox(Mailbox):
    def __init__(self, broker: RedisTransport | RedisCoordinator) -> None:
        self.client = broker.client
        self.keys = broker.keys

    def post(self, workers: Sequence[str], command: bytes, ttl: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        for worker in workers:
            key = self.keys.inbox(worker)
            pipe.rpush(key, command)
            pipe.pexpire(key, _ms(ttl))
        pipe.execute()

    def take(self, worker: str, limit: int = 16) -> list[bytes]:
        taken: Any = self.client.lpop(self.keys.inbox(worker), limit)
        return [bytes(command) for command in taken] if taken else []

    def answer(self, reply_id: str, reply: bytes, ttl: float) -> None:
        key = self.keys.replies(reply_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(key, reply)
        pipe.pexpire(key, _ms(ttl))
        pipe.execute()

    def collect(self, reply_id: str, expected: int, timeout: float) -> list[bytes]:
        key = self.keys.replies(reply_id)
        deadline = time.monotonic() + timeout
        answers: list[bytes] = []
        while len(answers) < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            popped: Any = self.client.blpop([key], timeout=max(left, 0.01))
            if popped is not None:
                answers.append(bytes(popped[1]))
        self.client.delete(key)
        return answers

    def held(self, consumer_id: str) -> list[tuple[str, bytes]]:
        entries: Any = self.client.hgetall(self.keys.inflight(consumer_id))
        held = []
        for tag, value in entries.items():
            # list key \n deliveries \n body (see fetch.lua)
            body = bytes(value).split(b"\n", 2)[2]
            held.append((text(tag), body))
        return held
