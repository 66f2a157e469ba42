"""An unreachable store's error names which store it is, so a worker's log line says
"result backend connection lost" when the results link (behind AMQP acks) lost Redis,
not "broker connection lost"."""

from __future__ import annotations

from conveyor.exceptions import BrokerUnavailable
from conveyor.stores.redis.connection import pool_from_url, unavailable


def test_the_error_carries_the_role_of_its_pool() -> None:
    pool = pool_from_url("redis://127.0.0.1:1/0", role="the result backend")
    error = unavailable(ConnectionRefusedError(111, "Connection refused"), pool)
    assert isinstance(error, BrokerUnavailable)
    assert error.role == "the result backend"
    assert str(error).startswith("cannot reach the result backend at redis://127.0.0.1:1/0")


def test_a_broker_error_says_broker_by_default() -> None:
    assert BrokerUnavailable("cannot reach the broker").role == "the broker"
