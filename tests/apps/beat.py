"""The beat tests' app: one entry every second, declared the way Celery users write it
(``on_after_configure`` and ``add_periodic_task``), plus one in ``beat_schedule``.

    CONVEYOR_BROKER_URL    the broker (redis:// or sqlite:///)
    BEAT_LEASE_SECONDS     beat_lease_seconds
    BEAT_RECORD_DIR        where ``tick`` logs its runs (for ``worker -B``)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor

app = Conveyor("tests.apps.beat")
if "BEAT_LEASE_SECONDS" in os.environ:
    app.conf.beat_lease_seconds = float(os.environ["BEAT_LEASE_SECONDS"])
app.conf.beat_max_loop_interval = 1.0
app.conf.beat_schedule = {
    "hourly-report": {"task": "tests.apps.beat.tick", "schedule": 3600.0, "args": ("hourly",)},
}

QUEUE = "beat"


@app.task(queue=QUEUE)
def tick(label: str) -> str:
    directory = os.environ.get("BEAT_RECORD_DIR")
    if directory:
        fd = os.open(Path(directory) / "ticks.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, f"{label} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)
    return label


@app.on_after_configure.connect
def setup_periodic_tasks(sender: Any, **kwargs: Any) -> None:
    sender.add_periodic_task(1.0, tick.s("second"), name="every second")
