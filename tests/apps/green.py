"""The test app of the green pools (gevent, eventlet): I/O-bound tasks that only yield
if the worker process was monkey-patched before conveyor was imported.

The broker comes from CONVEYOR_BROKER_URL (set by the spawn_worker fixture).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from conveyor import Conveyor, SoftTimeLimitExceeded

app = Conveyor("tests.apps.green")
app.conf.task_track_started = True  # the tests wait for STARTED


@app.task(bind=True)
def nap(self: Any, seconds: float) -> str:
    """Sleep with ``time.sleep`` (the patched one yields to the hub), then return this
    task's own id, read after the sleep: a request stack shared by the greenlets of a
    thread would answer another task's id."""
    time.sleep(seconds)
    return str(self.request.id)


@app.task(bind=True)
def timed_nap(self: Any, seconds: float) -> tuple[str, float]:
    """``nap``, returning its id and the time it started."""
    started = time.time()
    time.sleep(seconds)
    return str(self.request.id), started


@app.task
async def awaits(x: int) -> int:
    """An ``async def`` task: a green pool cannot run it (asyncio's running loop is per
    OS thread, shared by every greenlet) and dead-letters it with the reason."""
    return x


@app.task
def patched() -> dict[str, str]:
    """What the worker's standard library is (the green pools patch it)."""
    return {
        "socket": socket.socket.__module__,
        "sleep": time.sleep.__module__,
        "lock": type(threading.Lock()).__module__,
    }


@app.task(soft_time_limit=0.5, time_limit=5)
def soft_limited() -> str:
    """Sleeps past its soft limit, and returns what interrupted it."""
    try:
        time.sleep(10)
    except SoftTimeLimitExceeded as exc:
        return f"soft: {exc}"
    return "not interrupted"


@app.task(time_limit=0.5)
def hard_limited() -> str:
    """Sleeps past its hard limit, swallowing nothing: the limit ends it."""
    time.sleep(10)
    return "not interrupted"


@app.task(time_limit=0.5)
def hogs_the_hub(seconds: float) -> str:
    """Never yields: spins on the CPU past its hard limit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return "finished"
