"""The pool registry: -P names a registered class; an unknown name is a clear error."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import ClassVar

import pytest

from conveyor import Conveyor
from conveyor.cli.main import main
from conveyor.exceptions import ConfigurationError
from conveyor.worker.inprocess import SoloPool, ThreadsPool
from conveyor.worker.main import Worker
from conveyor.worker.pool import Pool, RunningAttempt
from conveyor.worker.pools import pool_class, pool_names, register_pool
from conveyor.worker.supervisor import Supervisor


@pytest.fixture
def app() -> Iterator[Conveyor]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Conveyor("pools-test", broker=url, backend=url, set_as_current=False)
    yield app
    app.close()


def test_the_built_in_pools_are_registered_by_name() -> None:
    assert pool_names()[:3] == ["prefork", "threads", "solo"]
    assert pool_class("prefork") is Supervisor
    assert pool_class("threads") is ThreadsPool
    assert pool_class("solo") is SoloPool


def test_an_unknown_pool_is_an_error_naming_the_registered_ones(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown pool 'curio': expected one of "
                       r"prefork, threads, solo"):
        pool_class("curio")
    with pytest.raises(ConfigurationError, match="unknown pool 'nope'"):
        Worker(app, pool="nope")


def test_the_cli_refuses_an_unknown_pool_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["-A", "tests.apps.basic", "worker", "-P", "nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "Error: unknown pool 'nope': expected one of " + ", ".join(pool_names())


class Recorder(Pool):
    """A pool that runs nothing: it records what the worker asked of it."""

    name: ClassVar[str] = f"recorder-{uuid.uuid4().hex[:6]}"
    ran: ClassVar[list[str]] = []

    def run(self) -> int:
        self.ran.append(self.worker.hostname)
        return 7

    def interrupt(self, attempt: RunningAttempt, exc_type: type[BaseException]) -> None:
        raise AssertionError("nothing runs")


def test_a_registered_pool_is_chosen_by_name_and_runs_the_worker(app: Conveyor) -> None:
    register_pool(Recorder)
    assert Recorder.name in pool_names()
    worker = Worker(app, pool=Recorder.name, hostname="w1@test")
    assert worker.pool_class is Recorder
    assert worker.start() == 7
    assert Recorder.ran == ["w1@test"]
    register_pool(Recorder)  # the same class again is harmless


def test_a_name_is_registered_once() -> None:
    class Impostor(ThreadsPool):
        name: ClassVar[str] = "threads"

    with pytest.raises(ConfigurationError, match="'threads' is already registered"):
        register_pool(Impostor)
    assert pool_class("threads") is ThreadsPool


def test_a_forking_pool_refuses_the_in_process_memory_store(app: Conveyor) -> None:
    with pytest.raises(ConfigurationError, match="memory:// broker lives inside one process"):
        Worker(app, pool="prefork")
    assert Worker(app, pool="threads").pool_class is ThreadsPool
