"""The control mailbox in memory: inboxes and replies beside the memory broker's state
(shared by every broker object on the same ``memory://`` URL), with a condition for
waiting on answers."""

from __future__ import annotations

import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..mailbox import Mailbox

if TYPE_CHECKING:
    from .transport import MemoryTransport

__all__ = ["MemoryMailbox"]


class _Boxes:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.inboxes: defaultdict[str, deque[tuple[float, bytes]]] = defaultdict(deque)
        self.replies: defaultdict[str, list[bytes]] = defaultdict(list)


# Keyed by id() of the broker's state (a dataclass, so not hashable); an entry goes
# when its state does.
_BOXES: dict[int, _Boxes] = {}
_LOCK = threading.Lock()


class MemoryMailbox(Mailbox):
    def __init__(self, broker: MemoryTransport) -> None:
        self.broker = broker
        with _LOCK:
            key = id(broker.state)
            boxes = _BOXES.get(key)
            if boxes is None:
                boxes = _BOXES[key] = _Boxes()
                weakref.finalize(broker.state, _BOXES.pop, key, None)
        self.boxes = boxes

    def post(self, workers: Sequence[str], command: bytes, ttl: float) -> None:
        expires = time.monotonic() + ttl
        with self.boxes.cond:
            for worker in workers:
                self.boxes.inboxes[worker].append((expires, command))

    def take(self, worker: str, limit: int = 16) -> list[bytes]:
        now = time.monotonic()
        taken: list[bytes] = []
        with self.boxes.cond:
            inbox = self.boxes.inboxes.get(worker)
            while inbox and len(taken) < limit:
                expires, command = inbox.popleft()
                if expires > now:
                    taken.append(command)
        return taken

    def answer(self, reply_id: str, reply: bytes, ttl: float) -> None:
        with self.boxes.cond:
            self.boxes.replies[reply_id].append(reply)
            self.boxes.cond.notify_all()

    def collect(self, reply_id: str, expected: int, timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        boxes = self.boxes
        with boxes.cond:
            while len(boxes.replies.get(reply_id, ())) < expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                boxes.cond.wait(left)
            return boxes.replies.pop(reply_id, [])

    def held(self, consumer_id: str) -> list[tuple[str, bytes]]:
        state = self.broker.state
        with state.cond:
            held = state.inflight.get(consumer_id, {})
            return [(str(tag), entry.message.body) for tag, entry in held.items()]
