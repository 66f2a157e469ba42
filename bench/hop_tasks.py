"""The task of bench/rt_hops.py: it returns the time its body started (epoch seconds)."""

from __future__ import annotations

import time

from conveyor import Conveyor
from counter import redis_url

app = Conveyor("hopbench", broker=redis_url(), backend=redis_url())


@app.task
def stamp() -> float:
    return time.time()
