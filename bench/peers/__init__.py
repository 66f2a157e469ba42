"""Task queues users would pick instead of conveyor, each behind ``peers.base.Peer``.

One module per peer, named after it: ``PEER`` (its worker command) and ``client()``.
Importing a module needs BENCH_REDIS_URL set and the peer's package installed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("conveyor", "celery", "dramatiq", "huey", "rq", "arq", "taskiq")


def load(name: str) -> ModuleType:
    if name not in NAMES:
        raise ValueError(f"unknown peer {name!r}; expected one of {', '.join(NAMES)}")
    return importlib.import_module(f"peers.{name}")
