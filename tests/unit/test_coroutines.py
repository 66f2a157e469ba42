"""Running async def bodies outside the asyncio pool, and interrupting a coroutine where
it waits (conveyor/coroutines.py), with no broker."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from conveyor import Conveyor
from conveyor.coroutines import Interruptible, run_to_completion
from conveyor.exceptions import SoftTimeLimitExceeded
from conveyor.task import current_request
from conveyor.worker.timelimits import raise_in_thread

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def app() -> Iterator[Conveyor]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Conveyor("coroutines-test", broker=url, backend=url, set_as_current=False)
    yield app
    app.close()


def test_an_interruption_is_thrown_into_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []

    async def body() -> str:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded as exc:
            seen.append(str(exc))
            await asyncio.sleep(0)  # it may still await while it cleans up
            return "cleaned up"
        return "slept"

    async def main() -> str:
        wrapper = Interruptible(body())
        task = asyncio.ensure_future(wrapper)
        await asyncio.sleep(0.01)
        assert wrapper.interrupt(SoftTimeLimitExceeded("soft"))
        value: str = await task
        assert task.cancelling() == 0  # the cancel was ours, not the task's
        return value

    assert asyncio.run(main()) == "cleaned up"
    assert seen == ["soft"]


def test_a_plain_cancel_still_cancels() -> None:
    async def main() -> None:
        task = asyncio.ensure_future(Interruptible(asyncio.sleep(30)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_run_to_completion_gives_the_value_and_reaches_the_coroutine_by_signal() -> None:
    async def body() -> str:
        try:
            await asyncio.sleep(30)
        except SoftTimeLimitExceeded:
            return "interrupted"
        return "slept"

    assert run_to_completion(asyncio.sleep(0, "value")) == "value"

    def on_alarm(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded("alarm")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.monotonic()
        assert run_to_completion(body()) == "interrupted"
        assert time.monotonic() - started < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_run_to_completion_is_reached_by_an_exception_raised_into_its_thread() -> None:
    outcome: list[str] = []

    async def body() -> None:
        try:
            await asyncio.sleep(30)
            outcome.append("slept")
        except SoftTimeLimitExceeded:
            outcome.append("interrupted")

    thread = threading.Thread(target=run_to_completion, args=(body(),))
    thread.start()
    time.sleep(0.1)
    raise_in_thread(thread.ident or 0, SoftTimeLimitExceeded)
    thread.join(5)
    assert outcome == ["interrupted"]


def test_an_eager_async_task_returns_its_value_even_inside_a_running_loop(
    app: Conveyor,
) -> None:
    app.conf.task_always_eager = True

    @app.task(bind=True)
    async def double(self: object, x: int) -> list[object]:
        await asyncio.sleep(0)
        request = current_request()
        return [2 * x, request.id if request else None]

    result = double.delay(2)
    assert result.get() == [4, result.id]

    async def inside() -> list[object]:
        return (await double.adelay(3)).get()

    assert asyncio.run(inside())[0] == 6
    assert double.is_async
