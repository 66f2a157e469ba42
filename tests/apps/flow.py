"""The flow-control tests' app: rate limits, concurrency limits, idempotent sends.

Tasks record what they did in files, so the same tests run on Redis and on SQLite:

    CONVEYOR_BROKER_URL   the broker (and the results)
    FLOW_RECORD_DIR       where the tasks write
    FLOW_LEASE_SECONDS    worker_lease_seconds
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor

app = Conveyor("tests.apps.flow")
if "FLOW_LEASE_SECONDS" in os.environ:
    app.conf.worker_lease_seconds = float(os.environ["FLOW_LEASE_SECONDS"])


def _path(name: str) -> Path:
    return Path(os.environ["FLOW_RECORD_DIR"]) / name


def log(name: str, line: str) -> None:
    """One O_APPEND write per line: whole lines, even from several processes."""
    fd = os.open(_path(f"{name}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_log(directory: Path, name: str) -> list[str]:
    path = directory / f"{name}.log"
    return path.read_text().splitlines() if path.exists() else []


def bump(name: str, delta: int) -> int:
    """Add ``delta`` to a counter shared by every process (a file under flock)."""
    fd = os.open(_path(f"{name}.count"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        value = int(os.read(fd, 64) or b"0") + delta
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(value).encode())
        return value
    finally:
        os.close(fd)  # releases the lock


@app.task(rate_limit="20/s")
def limited(n: int) -> int:
    log("limited", f"{time.time():.6f} {os.getpid()}")
    return n


@app.task(concurrency_limit=2, concurrency_key="customer_id")
def per_customer(customer_id: str, seconds: float) -> int:
    """Counts how many run at once for this customer; the log keeps every count seen."""
    running = bump(f"running-{customer_id}", +1)
    log(f"running-{customer_id}", str(running))
    try:
        time.sleep(seconds)
    finally:
        bump(f"running-{customer_id}", -1)
    return running


@app.task(bind=True, concurrency_limit=1, concurrency_key="customer_id")
def hold(self: Any, customer_id: str, seconds: float) -> str:
    """Holds its customer's only slot for ``seconds`` on its first delivery."""
    log(f"hold-{customer_id}", f"start {self.request.delivery_info['deliveries']}")
    if self.request.delivery_info["deliveries"] == 1:
        time.sleep(seconds)
    return "done"


@app.task
def charge(charge_id: str) -> str:
    log("charges", charge_id)
    return charge_id


@app.task(idempotency_key="order_id")
def ship(order_id: int, express: bool = False) -> int:
    log("shipments", str(order_id))
    return order_id
