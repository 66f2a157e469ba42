"""The worker's event-stream listener (observe/stream.py) on the memory broker: events
from many threads are stored once each, in batches, and close() writes what is left."""

from __future__ import annotations

import json
import threading
import uuid

from conveyor import Conveyor
from conveyor.observe.stream import EventStreamListener
from conveyor.stores.eventlog import event_log_for
from conveyor.task import Context
from conveyor.worker.hooks import WorkerHooks


def test_events_from_many_threads_are_stored_once_each_and_close_flushes() -> None:
    app = Conveyor("stream", broker=f"memory://{uuid.uuid4().hex}", set_as_current=False)
    try:
        others = set(threading.enumerate())  # flushers of other tests may still run
        hooks = WorkerHooks(app.events, "w1@test")
        listener = EventStreamListener(app)
        hooks.subscribe(listener)

        def work(thread: int) -> None:
            for i in range(200):
                request = Context(id=f"{thread}-{i}", task="t.add", args=(i,), kwargs={})
                hooks.task_started(request)
                hooks.task_succeeded(request, i, 0.001)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        flushers = [
            t for t in threading.enumerate() if t.name == "conveyor-events" and t not in others
        ]
        assert len(flushers) == 1  # one per process, however many threads raced
        listener.close()  # no wait for the 200 ms flusher: everything is stored now
        assert not flushers[0].is_alive()
        stored = [json.loads(body) for _, body in event_log_for(app.broker).read(None, 10_000)]
        assert len(stored) == 1600
        succeeded = [e for e in stored if e["type"] == "task-succeeded"]
        assert sorted(e["uuid"] for e in succeeded) == sorted(
            f"{n}-{i}" for n in range(4) for i in range(200)
        )
        assert {e["result"] for e in succeeded if e["uuid"] == "2-7"} == {"7"}  # a repr
    finally:
        app.close()
