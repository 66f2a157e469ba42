"""``broker_max_message_size`` at send time: a clear error, and nothing is sent."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, chain, group

LIMIT = 1_000
TOO_BIG = "x" * 2 * LIMIT


@pytest.fixture
def app() -> Conveyor:
    return Conveyor("sizes", broker="memory://", broker_max_message_size=LIMIT,
                    set_as_current=False)


def _waiting(app: Conveyor) -> int:
    return sum(q.ready + q.scheduled for q in app.broker.queues())


def test_a_message_over_the_limit_fails_at_delay(app: Conveyor) -> None:
    @app.task
    def echo(value: str) -> str:
        return value

    before = _waiting(app)
    with pytest.raises(ValueError, match=r"over broker_max_message_size \(1,000\)") as caught:
        echo.delay(TOO_BIG)
    assert "echo" in str(caught.value) and "pass its key" in str(caught.value)
    with pytest.raises(ValueError, match="broker_max_message_size"):
        echo.delay_many([("small",), (TOO_BIG,)])
    with pytest.raises(ValueError, match="broker_max_message_size"):
        group(echo.s("small"), echo.s(TOO_BIG)).apply_async()
    with pytest.raises(ValueError, match="broker_max_message_size"):
        chain(echo.s(TOO_BIG), echo.s()).apply_async()
    assert _waiting(app) == before, "nothing was sent"
    echo.delay("small")
    assert _waiting(app) == before + 1


def test_no_limit_when_the_setting_is_off(app: Conveyor) -> None:
    app.conf.broker_max_message_size = None

    @app.task
    def echo(value: str) -> str:
        return value

    before = _waiting(app)
    echo.delay(TOO_BIG)
    assert _waiting(app) == before + 1
