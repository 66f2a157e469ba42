"""Flow-control options on the memory broker: rate strings, keys, unique sends, and the
worker's gate (rate and concurrency limits defer instead of holding a slot)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.exceptions import ConfigurationError
from conveyor.limits import call_key, parse_rate
from conveyor.message import decode_envelope
from conveyor.worker.admission import DEFERRED, AdmissionGate


@pytest.fixture
def app() -> Iterator[Conveyor]:
    app = Conveyor("flow-test", broker=f"memory://{uuid.uuid4().hex}", set_as_current=False)
    yield app
    app.close()


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("10/s", 10.0), ("100/m", 100 / 60), ("1000/h", 1000 / 3600), ("5", 5.0), (2.5, 2.5),
     ("0", None), (0, None), (None, None), ("", None), (" 30 / min ", 0.5)],
)  # fmt: skip
def test_rate_strings_read_as_celery_reads_them(text: Any, per_second: float | None) -> None:
    assert parse_rate(text) == pytest.approx(per_second) if per_second else parse_rate(text) is None


@pytest.mark.parametrize("bad", ["ten/s", "10/d", "-1/s"])
def test_a_bad_rate_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_rate(bad)


def test_keys_come_from_an_argument_name_a_callable_or_all_arguments(app: Conveyor) -> None:
    @app.task(bind=True)
    def charge(self: Any, customer_id: int, amount: int, note: str = "") -> None: ...

    assert call_key(charge, "customer_id", [7, 100], {}) == "7"
    assert call_key(charge, "customer_id", [], {"customer_id": 8, "amount": 1}) == "8"
    assert call_key(charge, "amount", [7, 100], {}) == "100"
    assert call_key(charge, lambda a, k: k["note"], [1, 2], {"note": "x"}) == "x"
    assert call_key(charge, True, [1, 2], {"b": 1, "a": 2}) == call_key(
        charge, True, [1, 2], {"a": 2, "b": 1}
    )
    assert call_key(charge, None, [1], {}) is None
    with pytest.raises(ConfigurationError, match="note"):
        call_key(charge, "note", [1, 2], {})


def test_a_second_send_with_the_same_key_returns_the_first_result(app: Conveyor) -> None:
    @app.task
    def pay(charge_id: str) -> None: ...

    first = pay.apply_async(("c-1",), idempotency_key="charge-123")
    second = pay.apply_async(("c-1",), idempotency_key="charge-123")
    other = pay.apply_async(("c-2",), idempotency_key="charge-456")
    assert second.id == first.id != other.id
    assert sum(q.ready for q in app.broker.queues()) == 2


def test_a_task_can_derive_its_idempotency_key(app: Conveyor) -> None:
    @app.task(idempotency_key="order_id", idempotency_window=60)
    def ship(order_id: int, express: bool = False) -> None: ...

    assert ship.delay(1).id == ship.delay(1, express=True).id != ship.delay(2).id
    assert sum(q.ready for q in app.broker.queues()) == 2


class Gate:
    """An AdmissionGate on one consumer of the app's memory broker."""

    def __init__(self, app: Conveyor, consumer_id: str = "c1") -> None:
        self.app = app
        self.consumer = app.broker.consumer(["celery"], consumer_id, 30)
        self.gate = AdmissionGate(app, app.broker, consumer_id)
        self.last = DEFERRED

    def admit_next(self) -> bool:
        (delivery,) = self.consumer.fetch(1, timeout=1)
        envelope = decode_envelope(delivery.body, frozenset({"json"}))
        task = self.app.tasks[envelope.task]
        assert self.gate.watches(task.name)
        self.last = self.gate.admit(task, envelope, delivery)  # admitted: leased, "running"
        return bool(self.last)


def test_the_gate_defers_a_rate_limited_task_to_its_slot(app: Conveyor) -> None:
    @app.task(rate_limit="2/s")
    def limited() -> None: ...

    @app.task
    def free() -> None: ...

    for _ in range(3):
        limited.delay()
    gate = Gate(app)
    assert not gate.gate.watches(free.name)  # no limit: no round trip
    assert gate.admit_next()
    assert not gate.admit_next()  # deferred 0.5 s, not held
    assert not gate.admit_next()  # deferred 1 s
    (stats,) = app.broker.queues()
    assert (stats.ready, stats.scheduled) == (0, 2)
    assert gate.admit_next() and gate.admit_next()  # each back at its slot: runs


def test_a_run_time_rate_limit_reaches_the_gate(app: Conveyor) -> None:
    @app.task
    def free() -> None: ...

    gate = Gate(app)
    assert not gate.gate.watches(free.name)
    app.control.rate_limit(free.name, "1/m")
    gate.gate._refresh_at = 0  # as a second later
    assert gate.gate.watches(free.name)
    free.delay()
    free.delay()
    assert gate.admit_next()
    assert not gate.admit_next()
    app.control.rate_limit(free.name, "0")  # lifted
    gate.gate._refresh_at = 0
    assert gate.gate.watches(free.name)
    assert gate.gate.rate_of(free) is None
    with pytest.raises(ConfigurationError):
        app.control.rate_limit(free.name, "fast")


def test_the_gate_holds_concurrency_slots_per_key(app: Conveyor) -> None:
    @app.task(concurrency_limit=1, concurrency_key="customer")
    def sync(customer: str) -> None: ...

    sync.delay("a")
    sync.delay("a")
    sync.delay("b")
    one, two = Gate(app, "c1"), Gate(app, "c2")
    assert one.admit_next()  # a: holds the slot
    assert not two.admit_next()  # a again: deferred
    assert two.admit_next()  # b: its own slot
    one.gate.release(one.last)
    (stats,) = app.broker.queues()
    assert stats.scheduled == 1
