"""Task ids: random (version 4) UUID strings, as Celery's are, made cheaply.

``str(uuid.uuid4())`` costs ~3.9 µs (a ``UUID`` object, an int, a format); a
``.delay()`` makes one id, a ``delay_many`` of 100,000 makes 100,000. Here they are
formatted straight from the hex of ``os.urandom``, many per read.
"""

from __future__ import annotations

import os
from collections import deque

__all__ = ["new_task_id", "new_task_ids"]


def new_task_id() -> str:
    """A random (version 4) UUID string, as Celery's task ids are, for ~1 µs: made 64
    at a time from one ``os.urandom`` read and handed out one by one (``popleft`` is
    atomic, so two threads never get the same one; a forked child drops its parent's,
    see ``_forget_ids``)."""
    try:
        return _ids.popleft()
    except IndexError:
        _ids.extend(new_task_ids(64))
        return _ids.popleft()


def new_task_ids(n: int) -> list[str]:
    """``n`` new task ids (:func:`new_task_id`), from one ``os.urandom`` read."""
    h = os.urandom(16 * n).hex()
    v = _VARIANT
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{v[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


# The variant digit of a version 4 UUID (10xx in binary), from a random hex digit.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}
_ids: deque[str] = deque()


def _forget_ids() -> None:
    # A child must never hand out ids its parent holds too (random's own state is
    # reseeded at fork for the same reason).
    _ids.clear()


os.register_at_fork(after_in_child=_forget_ids)
