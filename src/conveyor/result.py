"""AsyncResult: the ticket ``.delay()`` returns, and how to read the outcome."""

from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import states
from .backends.base import ResultMeta, decode_meta
from .exceptions import TaskError, TimeoutError

if TYPE_CHECKING:
    from .app import Conveyor

__all__ = ["AsyncResult", "EagerResult", "exception_from_meta"]

R = TypeVar("R")


class AsyncResult(Generic[R]):
    """The state and outcome of one task call, read from the result backend."""

    def __init__(self, id: str, app: Conveyor | None = None, task_name: str | None = None) -> None:
        if app is None:
            from .app import current_app

            app = current_app()
        self.id = id
        self.app = app
        self.task_name = task_name

    @property
    def task_id(self) -> str:
        return self.id

    # reading ----------------------------------------------------------------------
    def _meta(self) -> ResultMeta | None:
        raw = self.app.backend.get(self.id)
        return decode_meta(raw) if raw is not None else None

    @property
    def state(self) -> str:
        meta = self._meta()
        return meta.status if meta else states.PENDING

    status = state

    @property
    def info(self) -> Any:
        """The result when it succeeded, the exception when it failed, the meta dict of
        a custom state (``update_state(state="PROGRESS", meta={...})``), else None."""
        meta = self._meta()
        return _value(meta) if meta else None

    result = info

    @property
    def traceback(self) -> str | None:
        meta = self._meta()
        return meta.traceback if meta else None

    @property
    def date_done(self) -> float | None:
        meta = self._meta()
        return meta.date_done if meta else None

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,  # accepted for Celery compatibility; waiting is pushed
        disable_sync_subtasks: bool = True,
    ) -> R:
        """Wait for the task to finish and return its result.

        Raises the task's own exception (when its type can be imported here) if it
        failed and ``propagate`` is true, and :class:`conveyor.exceptions.TimeoutError`
        when ``timeout`` seconds pass first.
        """
        started = time.monotonic()
        raw = self.app.backend.wait(self.id, timeout)
        if raw is None:
            waited = time.monotonic() - started
            raise TimeoutError(f"task {self.id} not ready after {waited:.3f}s")
        meta = decode_meta(raw)
        if meta.status in states.PROPAGATE_STATES:
            exc = exception_from_meta(meta)
            if propagate:
                raise exc
            return exc  # type: ignore[return-value]  # Celery returns the exception here
        value: R = meta.result
        return value

    wait = get

    def forget(self) -> None:
        """Delete the stored result."""
        self.app.backend.forget(self.id)

    def revoke(
        self,
        connection: object = None,
        terminate: bool = False,
        signal: str | int = "SIGTERM",
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke this task: no worker will run it, and with ``terminate`` a running
        one is stopped. ``wait`` blocks until the task is in a final state."""
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)
        if wait:
            self.app.backend.wait(self.id, timeout)

    # identity ---------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __str__(self) -> str:
        return self.id


class EagerResult(AsyncResult[R]):
    """The outcome of a task run in the caller's process (``task_always_eager``)."""

    def __init__(self, id: str, meta: ResultMeta, app: Conveyor | None = None) -> None:
        super().__init__(id, app, meta.name)
        self._eager_meta = meta

    def _meta(self) -> ResultMeta | None:
        return self._eager_meta

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        disable_sync_subtasks: bool = True,
    ) -> R:
        meta = self._eager_meta
        if meta.status in states.PROPAGATE_STATES:
            exc = exception_from_meta(meta)
            if propagate:
                raise exc
            return exc  # type: ignore[return-value]
        value: R = meta.result
        return value

    def forget(self) -> None:
        return None


def _value(meta: ResultMeta) -> Any:
    if meta.status in states.EXCEPTION_STATES and meta.exc_type:
        return exception_from_meta(meta)
    return meta.result


def exception_from_meta(meta: ResultMeta) -> BaseException:
    """Rebuild a task's exception: its own type when importable, else ``TaskError``."""
    dotted = meta.exc_type or "conveyor.exceptions.TaskError"
    args = list(meta.exc_args or [])
    cls = _import_exception(dotted)
    if cls is not None:
        try:
            return cls(*args)
        except Exception:
            pass
    message = f"{dotted}: {', '.join(map(str, args))}" if args else dotted
    return TaskError(message, exc_type=dotted)


def _import_exception(dotted: str) -> type[BaseException] | None:
    module_name, _, qualname = dotted.rpartition(".")
    try:
        obj: Any = importlib.import_module(module_name or "builtins")
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None
