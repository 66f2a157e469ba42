"""An attempt's life (prepare, execute, settle) on the memory store, step by step."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, states
from conveyor.exceptions import SoftTimeLimitExceeded
from conveyor.stores.transport import TransportConsumer, require_leases
from conveyor.worker.attempt import Attempt
from conveyor.worker.executor import DEFERRED, Executor
from conveyor.worker.hooks import WorkerHooks
from conveyor.worker.revocations import RevocationCache
from conveyor.worker.timelimits import Deadlines


@pytest.fixture
def app() -> Iterator[Conveyor]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Conveyor("attempt-test", broker=url, backend=url, set_as_current=False)
    yield app
    app.close()


class Watcher:
    """Records what an attempt watcher is told (as SIGALRM and the prefork slot are)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, Deadlines | None]] = []

    def started(self, attempt: Attempt) -> None:
        self.seen.append(("started", attempt.task_id, attempt.deadlines))

    def finished(self, attempt: Attempt) -> None:
        self.seen.append(("finished", attempt.task_id, attempt.deadlines))


class Worker:
    """One consumer of the app's memory broker and the executor its attempts share."""

    def __init__(self, app: Conveyor, consumer_id: str = "c1") -> None:
        self.app = app
        self.consumer_id = consumer_id
        self.consumer: TransportConsumer = app.broker.consumer(
            ["celery"], consumer_id, 30, results=app.backend
        )
        self.watcher = Watcher()
        self.executor = Executor(
            app,
            self.consumer,
            consumer_id,
            "test@host",
            WorkerHooks(app.events, "test@host"),
            RevocationCache(),
            (self.watcher,),
        )

    def next(self) -> Attempt:
        (delivery,) = self.consumer.fetch(1, timeout=1)
        return Attempt(delivery, self.executor)

    def run_next(self) -> Attempt:
        attempt = self.next()
        if attempt.prepare():
            attempt.execute()
        attempt.settle()
        self.consumer.flush()
        return attempt

    def leased(self) -> int:
        """Deliveries this consumer still holds (given back to count them)."""
        return require_leases(self.app.broker, "the test").reclaim(self.consumer_id)


def test_an_attempt_runs_and_settles_its_delivery(app: Conveyor) -> None:
    @app.task(soft_time_limit=60)
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 3)
    worker = Worker(app)
    attempt = worker.next()
    assert attempt.task_id is None  # nothing decoded before prepare
    assert attempt.prepare()
    assert attempt.task_id == result.id and attempt.request is not None
    assert attempt.outcome is None and not attempt.executing
    attempt.execute()
    assert attempt.outcome is not None and attempt.outcome.status == states.SUCCESS
    [(started, task_id, deadlines), (finished, _, _)] = worker.watcher.seen
    assert (started, finished, task_id) == ("started", "finished", result.id)
    assert deadlines is not None and deadlines.soft_limit == 60 and deadlines.hard is None
    assert attempt.deadlines is None and not attempt.executing  # the clock stopped
    attempt.settle()
    worker.consumer.flush()
    assert result.get(timeout=1) == 5
    assert worker.leased() == 0  # acked with its result


def test_a_failure_is_the_attempts_outcome_and_is_stored(app: Conveyor) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("no")

    result = boom.delay()
    attempt = Worker(app).run_next()
    assert attempt.outcome is not None and attempt.outcome.status == states.FAILURE
    with pytest.raises(ValueError, match="no"):
        result.get(timeout=1)


def test_a_message_that_cannot_run_settles_without_executing(app: Conveyor) -> None:
    app.broker.publish("celery", [b"not a message"])
    worker = Worker(app)
    attempt = worker.next()
    assert not attempt.prepare()
    assert attempt.outcome is not None and attempt.outcome.status == states.REJECTED
    attempt.settle()
    worker.consumer.flush()
    assert worker.watcher.seen == []  # never started
    assert worker.leased() == 0
    (letter,) = app.coordinator.dead_letters()
    assert letter.body == b"not a message"


def test_an_attempt_holds_its_concurrency_slot_until_its_body_ends(app: Conveyor) -> None:
    @app.task(concurrency_limit=1)
    def sync() -> None: ...

    sync.delay()
    sync.delay()
    one, two = Worker(app, "c1"), Worker(app, "c2")
    first = one.next()
    assert first.prepare()
    assert first.admission is not None and first.admission.slot is not None
    second = two.next()
    assert not second.prepare()  # the slot is the first attempt's
    assert second.outcome is not None and second.outcome.status == DEFERRED
    first.execute()
    assert first.admission is None  # given back as the body ended
    second.settle()
    first.settle()


def test_an_early_acked_attempt_leaves_the_queue_before_it_runs(app: Conveyor) -> None:
    @app.task(acks_late=False)
    def once() -> int:
        return 1

    result = once.delay()
    worker = Worker(app)
    attempt = worker.next()
    assert attempt.prepare()
    worker.consumer.flush()
    assert worker.leased() == 0  # gone before the body ran: at most once
    attempt.execute()
    attempt.settle()
    worker.consumer.flush()
    assert result.get(timeout=1) == 1


def test_an_attempt_settled_elsewhere_drops_its_late_outcome(app: Conveyor) -> None:
    @app.task
    def slow() -> int:
        return 1

    slow.delay()
    worker = Worker(app)
    attempt = worker.next()
    assert attempt.prepare()
    attempt.execute()
    attempt.settled = True  # as the keeper does when it records a task past its limit
    attempt.settle()
    worker.consumer.flush()
    assert worker.leased() == 1  # no second ack: the keeper's record stands


def test_a_pool_can_drive_the_steps_itself_as_an_asyncio_pool_would(app: Conveyor) -> None:
    @app.task
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    @app.task
    async def times_out() -> None:
        raise SoftTimeLimitExceeded("soft time limit (1s) exceeded")

    ok, late = fetch.delay(21), times_out.delay()
    worker = Worker(app)

    async def drive(attempt: Attempt) -> None:
        if attempt.prepare():
            attempt.arm()
            if attempt.begin():
                started = time.perf_counter()
                try:
                    value = await attempt.call()
                except Exception as exc:
                    attempt.raised(exc, time.perf_counter() - started)
                else:
                    attempt.succeeded(value, time.perf_counter() - started)
            attempt.disarm()
        attempt.settle()

    async def both() -> None:
        await asyncio.gather(drive(worker.next()), drive(worker.next()))

    asyncio.run(both())
    worker.consumer.flush()
    assert ok.get(timeout=1) == 42
    with pytest.raises(SoftTimeLimitExceeded):
        late.get(timeout=1)
    assert worker.leased() == 0


def test_arguments_that_do_not_fit_are_rejected_but_a_type_error_inside_fails(
    app: Conveyor,
) -> None:
    @app.task(typing=False)  # not checked at send, so the worker meets the bad call
    def one(x: int) -> int:
        return x

    class Twice(app.Task):  # type: ignore[name-defined]  # run() itself is the body
        name = "attempt-test.twice"
        typing = False

        def run(self, x: int) -> int:
            return 2 * x

    twice = app.register_task(Twice())

    @app.task
    def inner() -> None:
        raise TypeError("raised inside the body")

    misfit, class_misfit, failing = one.delay(1, 2), twice.delay(1, 2), inner.delay()
    worker = Worker(app)
    first, second = worker.run_next(), worker.run_next()
    assert first.outcome is not None and first.outcome.status == states.REJECTED
    assert second.outcome is not None and second.outcome.status == states.REJECTED
    second = worker.run_next()
    letters = app.coordinator.dead_letters()
    assert len(letters) == 2
    assert all("arguments do not fit the task" in letter.reason for letter in letters)
    assert class_misfit.state == states.REJECTED
    assert second.outcome is not None and second.outcome.status == states.FAILURE
    with pytest.raises(TypeError, match="raised inside the body"):
        failing.get(timeout=1)
    assert misfit.state == states.REJECTED
