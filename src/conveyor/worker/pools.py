"""The solo and threads pools: consume loops in this process.

``solo`` runs one loop in the main thread (debuggers, one-at-a-time work); ``threads``
runs N loops on N threads (I/O-bound work). Each loop has its own broker connection and
lease; one keeper thread renews them all. A second signal (cold shutdown) requeues what
is running and exits: threads cannot be killed, but their leases can be given back.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from .identity import consumer_id
from .keeper import LeaseKeeper
from .loop import TRANSIENT, ConsumeLoop
from .revocations import RevocationCache
from .timelimits import Alarm

if TYPE_CHECKING:
    from ..app import Conveyor
    from .main import Worker

__all__ = ["run_in_process"]

logger = logging.getLogger("conveyor.worker")


def run_in_process(worker: Worker, threads: int) -> int:
    """Run ``threads`` loops (0 = solo, in the main thread) until shutdown."""
    app = worker.app
    stop = worker.stop
    count = max(1, threads)
    ready = threading.Semaphore(0)
    revocations = RevocationCache()
    _refresh(app, revocations)  # a revoke issued before this worker started is honoured
    alarm = Alarm(enforce_hard=True) if threads <= 0 else None
    loops = [
        ConsumeLoop(
            app,
            worker.queues,
            consumer_id(worker.hostname, f"{worker.pool}-{i + 1}"),
            worker.hostname,
            worker.hooks,
            stop,
            prefetch=worker.prefetch,
            on_ready=ready.release,
            revocations=revocations,
            alarm=alarm,
        )
        for i in range(count)
    ]
    keeper = LeaseKeeper(
        app, loops, stop, on_tick=worker.heartbeat, revocations=revocations, enforce_limits=True
    )
    keeper.start()
    worker.on_cold = lambda: _cold(worker, loops)
    if threads <= 0:
        worker.main_loop = loops[0]  # solo: a shutdown may interrupt its idle fetch
    if threads <= 0:
        announcer = threading.Thread(
            target=_announce_when_ready, args=(worker, ready, 1), daemon=True
        )
        announcer.start()
        loops[0].run()
    else:
        runners = [
            threading.Thread(target=loop.run, name=f"conveyor-{i + 1}")
            for i, loop in enumerate(loops)
        ]
        for runner in runners:
            runner.start()
        _announce_when_ready(worker, ready, count)
        stop.wait()
        for runner in runners:
            runner.join(worker.shutdown_timeout)
        if any(r.is_alive() for r in runners):
            logger.warning(
                "tasks still running after %ss: requeueing them", worker.shutdown_timeout
            )
            _cold(worker, loops)
    stop.set()
    keeper.join(2)
    worker.retire()
    return 0


def _refresh(app: Conveyor, revocations: RevocationCache) -> None:
    try:
        revocations.refresh(app.broker)
    except TRANSIENT as exc:
        logger.warning("could not read revocations yet (%s); the keeper will retry", exc)


def _announce_when_ready(worker: Worker, ready: threading.Semaphore, count: int) -> None:
    for _ in range(count):
        ready.acquire()
    worker.announce_ready()


def _cold(worker: Worker, loops: list[ConsumeLoop]) -> None:
    """Give every delivery these loops hold back to the queue, then leave at once."""
    for loop in loops:
        try:
            worker.app.broker.reclaim(loop.consumer_id)
        except Exception as exc:  # pragma: no cover - broker gone; leases will lapse
            logger.warning("could not requeue on cold shutdown: %s", exc)
    worker.retire()
    logging.shutdown()
    os._exit(1)
