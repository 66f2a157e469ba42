"""A forked child never uses its parent's connections: the app notices the fork (its
process id is kept current by an at-fork hook, not asked of the kernel per send)."""

from __future__ import annotations

import os
import uuid

from conveyor import Conveyor


def test_a_forked_child_makes_its_own_broker_and_backend() -> None:
    app = Conveyor("forked", broker=f"memory://{uuid.uuid4().hex}")
    parent_broker, parent_backend = app.broker, app.backend
    assert app.broker is parent_broker  # made once per process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        fresh = app.broker is not parent_broker and app.backend is not parent_backend
        again = app.broker is app.broker
        os.write(write, b"1" if fresh and again else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert app.broker is parent_broker  # the parent keeps its own
