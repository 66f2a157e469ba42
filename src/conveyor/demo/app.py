"""The demo's app, laid out as a Celery user would lay out their own.

Its broker comes from the command line (``conveyor demo`` passes ``-b``); its keys carry
their own prefix and its queues their own names, so pointing the demo at a Redis that
serves real work touches none of it.
"""

from __future__ import annotations

from ..app import Conveyor

__all__ = ["CPU_QUEUE", "IO_QUEUE", "app"]

CPU_QUEUE = "demo"  # prefork children: scoring, thumbnails
IO_QUEUE = "demo-io"  # a threads pool: work that mostly waits on the network

app = Conveyor(
    "conveyor.demo",
    include=["conveyor.demo.tasks"],
    set_as_current=False,
    task_default_queue=CPU_QUEUE,
    task_routes={"conveyor.demo.tasks.send_email": {"queue": IO_QUEUE}},
    redis_key_prefix="conveyor-demo",
    result_expires=3600.0,
)
