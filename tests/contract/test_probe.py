"""The oldest-waiting-message probe (stores/probe.py) on every store: read-only, per
queue, when the oldest waiting message was sent (the envelope's ``sent_at``, or the
store's publish time)."""

from __future__ import annotations

import time

from conveyor.stores.probe import oldest_waiting

from .conftest import MakeTransport


def _sent_now() -> bytes:
    return b'{"sent_at": %f}' % time.time()


def test_the_oldest_waiting_message_of_each_queue(make_transport: MakeTransport) -> None:
    transport = make_transport()
    before = time.time()
    transport.publish("a", [_sent_now()], priority=5)
    time.sleep(0.2)
    later = time.time()
    transport.publish("a", [_sent_now(), _sent_now()])
    transport.publish("b", [_sent_now()], priority=2)
    oldest = oldest_waiting(transport, ["a", "b", "empty"])
    assert set(oldest) == {"a", "b"}
    assert before - 0.01 <= oldest["a"] < later  # the first one, at a lower priority
    assert oldest["b"] >= later - 0.01
    assert sum(q.ready for q in transport.queues()) == 4  # nothing was taken
