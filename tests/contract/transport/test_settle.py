"""The settle step: a transport in the result backend's store writes the result and the
ack together (``Transport.carries_results_of``).
"""

from __future__ import annotations

import pytest

from conveyor.stores.results import ResultBackend
from conveyor.stores.transport import ResultWrite, Transport

from ..conftest import KINDS
from .helpers import LEASE, leased


# A co-located backend: the transports whose store holds results too (not AMQP).
@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_a_colocated_backend_stores_the_result_with_the_ack(
    transport: Transport, backend: ResultBackend, kind: str
) -> None:
    if kind == "cluster":
        # By design: a result lives in its task's slot, the ack in its queue's; the
        # worker stores the result through the backend, then acks (test_cluster.py).
        assert not transport.carries_results_of(backend)
        return
    assert transport.carries_results_of(backend)
    transport.publish("q", [b"task"])
    consumer = transport.consumer(["q"], "c1", LEASE, results=backend)
    assert consumer.carries_results
    delivery = consumer.fetch(1, 1.0)[0]
    assert consumer.store(ResultWrite("t-1", b'{"status":"STARTED"}', False))
    consumer.flush()
    assert backend.get("t-1") == b'{"status":"STARTED"}'
    consumer.ack(delivery, ResultWrite("t-1", b'{"status":"SUCCESS"}', True))
    consumer.flush()
    assert backend.wait("t-1", 2.0) == b'{"status":"SUCCESS"}'
    assert leased(transport).reclaim("c1") == 0
