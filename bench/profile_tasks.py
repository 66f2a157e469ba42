"""A task that does almost nothing (results stored): what is left is conveyor's cost.

It bumps the bench counter once per 100 calls per process, so profile_drain.py can
still follow the drain (to within 100 tasks per child).
"""

from __future__ import annotations

from conveyor import Conveyor
from counter import COUNTER_KEY, client, redis_url

app = Conveyor("profileapp", broker=redis_url(), backend=redis_url())
_done = 0


@app.task
def noop(i: int) -> None:
    global _done
    _done += 1
    if _done % 100 == 0:
        client().incrby(COUNTER_KEY, 100)
