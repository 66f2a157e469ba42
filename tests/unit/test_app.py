from __future__ import annotations

import pytest

import conveyor
from conveyor import AsyncResult, Celery, Conveyor, shared_task, states
from conveyor.exceptions import NotRegistered, TaskError
from conveyor.result import exception_from_meta
from conveyor.stores.results import ResultMeta


def test_celery_is_conveyor() -> None:
    assert Celery is Conveyor


def test_public_api_is_pinned() -> None:
    assert sorted(conveyor.__all__) == sorted(
        [
            "AsyncResult",
            "Celery",
            "Context",
            "Conveyor",
            "EagerResult",
            "GroupResult",
            "MaxRetriesExceededError",
            "Reject",
            "ResultSet",
            "Retry",
            "Signature",
            "SoftTimeLimitExceeded",
            "Task",
            "TaskError",
            "TimeLimitExceeded",
            "TimeoutError",
            "__version__",
            "chain",
            "chord",
            "current_app",
            "get_task_logger",
            "group",
            "shared_task",
            "signature",
            "states",
        ]
    )
    for name in conveyor.__all__:
        assert hasattr(conveyor, name), name


def test_task_names_are_import_paths_and_options_stick() -> None:
    app = Conveyor("proj", set_as_current=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="custom.name", queue="q1", priority=3, ignore_result=True)
    def other() -> None:
        return None

    assert add.name == f"{__name__}.test_task_names_are_import_paths_and_options_stick.<locals>.add"
    assert app.tasks[add.name] is add
    assert other.name == "custom.name" and other.queue == "q1" and other.priority == 3
    assert add(2, 3) == 5  # calling a task runs it here


def test_bound_tasks_get_self() -> None:
    app = Conveyor("proj", set_as_current=False)

    @app.task(bind=True)
    def whoami(self: object) -> str:
        return type(self).__name__

    assert whoami() == "Task"


def test_get_task_and_send_task_errors() -> None:
    app = Conveyor("proj", set_as_current=False)
    with pytest.raises(NotRegistered, match="nope"):
        app.get_task("nope")


def test_shared_tasks_join_every_app() -> None:
    @shared_task
    def shared_double(x: int) -> int:
        return 2 * x

    app = Conveyor("later", set_as_current=False)
    assert shared_double.name in app.tasks
    assert shared_double(4) == 8


def test_routes_by_name_and_glob() -> None:
    app = Conveyor("proj", set_as_current=False)
    app.conf.task_routes = {"proj.emails.*": {"queue": "emails"}, "proj.video.encode": "video"}
    assert app.route("proj.emails.send") == "emails"
    assert app.route("proj.video.encode") == "video"
    assert app.route("proj.other") == "celery"


def test_eager_mode_runs_in_process_and_propagates_on_request() -> None:
    app = Conveyor("proj", set_as_current=False, task_always_eager=True)

    @app.task
    def div(x: int, y: int) -> float:
        return x / y

    result = div.delay(6, 3)
    assert result.get() == 2 and result.successful() and result.state == states.SUCCESS
    failed = div.delay(1, 0)
    assert failed.failed()
    with pytest.raises(ZeroDivisionError):
        failed.get()
    app.conf.task_eager_propagates = True
    with pytest.raises(ZeroDivisionError):
        div.delay(1, 0)


class CustomError(Exception):
    pass


def test_exceptions_are_rebuilt_as_their_own_type() -> None:
    meta = ResultMeta(
        task_id="1", status="FAILURE", exc_type=f"{__name__}.CustomError", exc_args=["boom"]
    )
    exc = exception_from_meta(meta)
    assert isinstance(exc, CustomError) and exc.args == ("boom",)
    meta = ResultMeta(task_id="1", status="FAILURE", exc_type="nowhere.Missing", exc_args=["x"])
    missing = exception_from_meta(meta)
    assert isinstance(missing, TaskError) and missing.exc_type == "nowhere.Missing"


def test_async_result_identity() -> None:
    app = Conveyor("proj", set_as_current=False)
    assert AsyncResult("a", app) == AsyncResult("a", app) == "a"
    assert len({AsyncResult("a", app), AsyncResult("a", app)}) == 1


def test_task_ids_are_uuid4_strings() -> None:
    import uuid

    from conveyor.task import new_task_id

    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    for task_id in list(ids)[:50]:
        parsed = uuid.UUID(task_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == task_id
