"""The demo's app, laid out as a Celery user would lay out their own.

Its broker comes from the command line (``conveyor demo`` passes ``-b``); its keys carry
their own prefix and its queues their own names, so pointing the demo at a Redis that
serves real work touches none of it.
"""

from __future__ import annotations

from ..app import Conveyor

__all__ = ["CPU_QUEUE", "HEARTBEAT_EVERY", "IO_QUEUE", "app"]

CPU_QUEUE = "demo"  # prefork children: scoring, thumbnails, reports, heartbeats
IO_QUEUE = "demo-io"  # a threads pool: work that mostly waits on the network
HEARTBEAT_EVERY = 0.5  # seconds between two heartbeat_report tasks sent by beat

app = Conveyor(
    "conveyor.demo",
    include=["conveyor.demo.tasks"],
    set_as_current=False,
    task_default_queue=CPU_QUEUE,
    task_routes={
        "conveyor.demo.tasks.send_email": {"queue": IO_QUEUE},
        "conveyor.demo.tasks.call_webhook": {"queue": IO_QUEUE},
    },
    # Run by the beat that the CPU worker embeds (``conveyor worker -B``).
    beat_schedule={
        "heartbeat": {"task": "conveyor.demo.tasks.heartbeat_report", "schedule": HEARTBEAT_EVERY},
    },
    redis_key_prefix="conveyor-demo",
    result_expires=3600.0,
)
