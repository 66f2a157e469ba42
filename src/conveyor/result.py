"""AsyncResult: the ticket ``.delay()`` returns, and how to read the outcome;
GroupResult: the same for a group of tasks (``save()``/``restore(id)`` keep it in the
backend); ResultSet: any results read together."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from . import states
from .exceptions import TaskError, TimeoutError
from .stores.aio import get_async, get_many_async, wait_async
from .stores.results import ResultMeta, decode_meta

if TYPE_CHECKING:
    from .app import Conveyor

__all__ = ["AsyncResult", "EagerResult", "GroupResult", "ResultSet", "exception_from_meta"]

R = TypeVar("R")


class AsyncResult(Generic[R]):
    """The state and outcome of one task call, read from the result backend."""

    # Sent with ignore_result: nothing will be stored, so get() returns None at once
    # (Celery's ``AsyncResult.ignored``) instead of waiting forever.
    ignored: bool = False

    def __init__(self, id: str, app: Conveyor | None = None, task_name: str | None = None) -> None:
        if app is None:
            from .app import current_app

            app = current_app()
        self.id = id
        self.app = app
        self.task_name = task_name
        self._parent: AsyncResult[Any] | None = None

    @property
    def task_id(self) -> str:
        return self.id

    # the workflow around it -------------------------------------------------------
    @property
    def parent(self) -> AsyncResult[Any] | None:
        """The result this task was sent after (the step before it in a chain): known
        at once for a workflow sent here, else read from the stored ``parent_id``."""
        if self._parent is None:
            meta = self._meta()
            if meta is not None and meta.parent_id:
                self._parent = AsyncResult(meta.parent_id, self.app)
        return self._parent

    @parent.setter
    def parent(self, value: AsyncResult[Any] | None) -> None:
        self._parent = value

    @property
    def children(self) -> list[AsyncResult[Any]]:
        """The tasks this one sent (its callbacks, and calls made while it ran), as
        stored with its result."""
        meta = self._meta()
        return [AsyncResult(child, self.app) for child in (meta.children or ())] if meta else []

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
    def date_done(self) -> datetime | None:
        """When the task ended, a timezone-aware datetime in the app's ``timezone``
        (as Celery's)."""
        meta = self._meta()
        if meta is None or meta.date_done is None:
            return None
        return datetime.fromtimestamp(meta.date_done, ZoneInfo(self.app.conf.timezone or "UTC"))

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
        if self.ignored:
            return None  # type: ignore[return-value]  # nothing will ever be stored
        started = time.monotonic()
        raw = self.app.backend.wait(self.id, timeout)
        meta = self._final(raw, started)
        if meta.status in states.PROPAGATE_STATES:
            exc = exception_from_meta(meta)
            if propagate:
                # Celery's follow_parents: the first failure up the workflow is raised,
                # so a chain or chord raises its failed task's own exception.
                self._raise_parent_failure()
                raise exc
            return exc  # type: ignore[return-value]  # Celery returns the exception here
        value: R = meta.result
        return value

    def _final(self, raw: bytes | None, started: float) -> ResultMeta:
        if raw is None:
            waited = time.monotonic() - started
            raise TimeoutError(f"task {self.id} not ready after {waited:.3f}s")
        return decode_meta(raw)

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> R:
        """:meth:`get` without blocking the running event loop: ``await result.aget()``,
        or ``await result``. The wait is pushed as for ``get`` (redis.asyncio's BLMOVE;
        a thread for a backend without an async client)."""
        if self.ignored:
            return None  # type: ignore[return-value]  # nothing will ever be stored
        started = time.monotonic()
        meta = self._final(await wait_async(self.app.backend, self.id, timeout), started)
        if meta.status in states.PROPAGATE_STATES:
            exc = exception_from_meta(meta)
            if propagate:
                if self._parent is not None:  # reads the workflow's results: on a thread
                    await asyncio.get_running_loop().run_in_executor(
                        None, self._raise_parent_failure
                    )
                raise exc
            return exc  # type: ignore[return-value]
        value: R = meta.result
        return value

    def __await__(self) -> Generator[Any, None, R]:
        """``await result`` is ``await result.aget()``: wait, with no timeout."""
        return self.aget().__await__()

    async def astate(self) -> str:
        """:attr:`state`, read without blocking the running event loop."""
        raw = await get_async(self.app.backend, self.id)
        return decode_meta(raw).status if raw is not None else states.PENDING

    async def ainfo(self) -> Any:
        """:attr:`info` (also :attr:`result`), read without blocking the running loop."""
        raw = await get_async(self.app.backend, self.id)
        return _value(decode_meta(raw)) if raw is not None else None

    def _raise_parent_failure(self) -> None:
        """Raise the exception of the first failed result before this one (the root
        first), as Celery's ``get()`` does; return when none failed."""
        lineage: list[AsyncResult[Any]] = []
        node = self._parent
        while node is not None:
            lineage.append(node)
            node = node._parent
        for node in reversed(lineage):
            node.maybe_throw()

    def maybe_throw(self, propagate: bool = True) -> None:
        """Raise the task's exception if it has failed (without waiting)."""
        meta = self._meta()
        if propagate and meta is not None and meta.status in states.PROPAGATE_STATES:
            raise exception_from_meta(meta)

    def then(
        self,
        callback: Callable[[AsyncResult[R]], Any],
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> Future[Any]:
        """Call ``callback(result)`` once the task is ready (in a background thread
        that waits, pushed, for the result); ``on_error(exc)`` if waiting or the
        callback raised. The Future holds what the callback returned."""
        future: Future[Any] = Future()

        def wait_and_call() -> None:
            try:
                self._wait_ready()
                future.set_result(callback(self))
            except BaseException as exc:
                if on_error is not None:
                    on_error(exc)
                future.set_exception(exc)

        threading.Thread(target=wait_and_call, name=f"then-{self.id}", daemon=True).start()
        return future

    def _wait_ready(self) -> None:
        if not self.ignored:
            self.app.backend.wait(self.id, None)

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

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> R:
        return self.get(timeout, propagate)

    async def astate(self) -> str:
        return self._eager_meta.status

    async def ainfo(self) -> Any:
        return _value(self._eager_meta)

    def forget(self) -> None:
        return None


# How many member results a ResultSet reads in one round trip.
_WINDOW = 1000


class ResultSet(AsyncResult[list[Any]]):
    """Results read together, in order (Celery's ``ResultSet``): ``ResultSet([r1, r2])``,
    ``.add(r3)``, ``.get()`` the list of their values, ``.completed_count()``.

    Waiting is pushed, as for one task: ``get()`` reads the finished members a window
    at a time (one round trip each) and blocks on one not finished yet.
    Members may be result sets themselves (a group of groups, a chord with a group body).
    """

    def __init__(
        self, results: Iterable[AsyncResult[Any]] = (), app: Conveyor | None = None
    ) -> None:
        from .task import new_task_id

        results = list(results)
        # An id of its own, never stored: a set made here is no group in the backend.
        self._hold(new_task_id(), results, app or (results[0].app if results else None))

    def _hold(self, id: str, results: list[AsyncResult[Any]], app: Conveyor | None) -> None:
        AsyncResult.__init__(self, id, app)
        self.results: list[AsyncResult[Any]] = results

    def _meta(self) -> ResultMeta | None:
        return None  # a group has no record of its own: its state is its members'

    # the set of results (Celery's ResultSet) --------------------------------------------
    def add(self, result: AsyncResult[Any]) -> None:
        if result not in self.results:
            self.results.append(result)

    def update(self, results: Iterable[AsyncResult[Any]]) -> None:
        self.results.extend(r for r in results if r not in self.results)

    def remove(self, result: AsyncResult[Any] | str) -> None:
        self.results.remove(self._find(result))

    def discard(self, result: AsyncResult[Any] | str) -> None:
        with contextlib.suppress(ValueError):
            self.remove(result)

    def clear(self) -> None:
        self.results[:] = []

    def _find(self, result: AsyncResult[Any] | str) -> AsyncResult[Any]:
        for member in self.results:
            if member == result:
                return member
        raise ValueError(f"{result} is not in {self!r}")

    def maybe_throw(self, propagate: bool = True) -> None:
        """Raise the exception of the first member (in order) that failed."""
        for result in self.results:
            result.maybe_throw(propagate)

    def _wait_ready(self) -> None:
        self.get(propagate=False)

    # state ------------------------------------------------------------------------
    def _metas(self) -> list[ResultMeta | None]:
        return _read_metas(self.app, self.results)

    def _count(self, statuses: frozenset[str], nested: Callable[[ResultSet], bool]) -> int:
        return sum(
            nested(result) if isinstance(result, ResultSet) else (
                meta is not None and meta.status in statuses
            )
            for result, meta in zip(self.results, self._metas(), strict=True)
        )

    def ready(self) -> bool:
        return self._count(states.READY_STATES, ResultSet.ready) == len(self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        """How many of the tasks succeeded."""
        return self._count(_SUCCESS, ResultSet.successful)

    def successful(self) -> bool:
        return self.completed_count() == len(self.results)

    def failed(self) -> bool:
        return self._count(states.PROPAGATE_STATES, ResultSet.failed) > 0

    @property
    def state(self) -> str:
        """SUCCESS when every task succeeded, FAILURE as soon as one failed, else PENDING."""
        if self.successful():
            return states.SUCCESS
        return states.FAILURE if self.failed() else states.PENDING

    status = state

    # waiting ----------------------------------------------------------------------
    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,  # accepted for Celery compatibility; waiting is pushed
        disable_sync_subtasks: bool = True,
    ) -> list[Any]:
        """Wait for every task and return their results in order. With ``propagate``
        the first failure found is raised (without waiting for the rest); else failed
        tasks give their exception in their place."""
        deadline = None if timeout is None else time.monotonic() + timeout
        metas = self._collect(deadline, propagate)
        values: list[Any] = []
        for result, meta in zip(self.results, metas, strict=True):
            if isinstance(result, ResultSet):
                values.append(result.get(_left(deadline), propagate))
            else:
                assert meta is not None
                values.append(_outcome(meta, propagate))
        return values

    join = get
    join_native = get
    wait = get

    async def aget(self, timeout: float | None = None, propagate: bool = True) -> list[Any]:
        """:meth:`get` without blocking the running event loop: ``await group_result``
        (each window of members read in one round trip, as ``get`` does)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        results = self.results
        metas: list[ResultMeta | None] = [
            r._eager_meta if isinstance(r, EagerResult) else None for r in results
        ]
        pending = [i for i, r in enumerate(results) if not isinstance(r, _LOCAL)]
        while pending:
            window, rest = pending[:_WINDOW], pending[_WINDOW:]
            found = await get_many_async(self.app.backend, [results[i].id for i in window])
            unfinished = _settle(
                window, [decode_meta(raw) if raw is not None else None for raw in found],
                metas, propagate,
            )
            pending = unfinished + rest
            if unfinished:
                left = None if deadline is None else deadline - loop.time()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"{self!r}: {len(pending)} of {len(results)} tasks not ready in time"
                    )
                await wait_async(self.app.backend, results[unfinished[-1]].id, left)
        values: list[Any] = []
        for result, meta in zip(results, metas, strict=True):
            if isinstance(result, ResultSet):
                left = None if deadline is None else deadline - loop.time()
                values.append(await result.aget(left, propagate))
            else:
                assert meta is not None
                values.append(_outcome(meta, propagate))
        return values

    def _collect(self, deadline: float | None, propagate: bool) -> list[ResultMeta | None]:
        results = self.results
        metas = [r._eager_meta if isinstance(r, EagerResult) else None for r in results]
        pending = [i for i, r in enumerate(results) if not isinstance(r, _LOCAL)]
        while pending:
            window, rest = pending[:_WINDOW], pending[_WINDOW:]
            found = _read_metas(self.app, [results[i] for i in window])
            unfinished = _settle(window, found, metas, propagate)
            pending = unfinished + rest
            if unfinished:
                left = _left(deadline)
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"{self!r}: {len(pending)} of {len(results)} tasks not ready "
                        "in time"
                    )
                # Tasks end roughly in the order sent: waiting for the last unfinished
                # one of the window finds the rest done, one round trip per window.
                self.app.backend.wait(results[unfinished[-1]].id, left)
        return metas

    # acting on every task ---------------------------------------------------------
    def _leaves(self) -> list[AsyncResult[Any]]:
        out: list[AsyncResult[Any]] = []
        for result in self.results:
            out.extend(result._leaves() if isinstance(result, ResultSet) else (result,))
        return out

    def revoke(
        self,
        connection: object = None,
        terminate: bool = False,
        signal: str | int = "SIGTERM",
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke every task of the group in one command; ``wait`` blocks until all are
        in a final state."""
        self.app.control.revoke(
            [r.id for r in self._leaves()], terminate=terminate, signal=signal
        )
        if wait:
            self.get(timeout=timeout, propagate=False)

    def forget(self) -> None:
        for result in self.results:
            result.forget()

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult[Any]]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any]:
        return self.results[index]

    def __repr__(self) -> str:
        return f"<ResultSet: [{', '.join(r.id for r in self.results)}]>"


class GroupResult(ResultSet):
    """The results of a group's tasks, in order: a :class:`ResultSet` with the group's
    id, whose ``save()``/``restore(id)`` keep it in the backend (as Celery's, which
    derives from ``ResultSet`` the same way)."""

    def __init__(
        self, id: str, results: Iterable[AsyncResult[Any]] = (), app: Conveyor | None = None
    ) -> None:
        self._hold(id, list(results), app)

    @property
    def children(self) -> list[AsyncResult[Any]]:
        return self.results

    # kept in the backend (Celery's save/restore) ----------------------------------------
    def save(self) -> GroupResult:
        """Store the group's member ids under its id, for :meth:`restore` in another
        process (it expires with the results, ``result_expires``)."""
        from .stores.results import ResultMeta, encode_meta

        meta = ResultMeta(task_id=self.id, status=states.SUCCESS, result=_tree(self))
        self.app.backend.store(_group_key(self.id), encode_meta(meta), True)
        return self

    @classmethod
    def restore(cls, id: str, app: Conveyor | None = None) -> GroupResult | None:
        """The group saved under ``id`` with :meth:`save`; None when there is none."""
        if app is None:
            from .app import current_app

            app = current_app()
        raw = app.backend.get(_group_key(id))
        if raw is None:
            return None
        return _from_tree(decode_meta(raw).result, app)

    def delete(self) -> None:
        """Remove what :meth:`save` stored."""
        self.app.backend.forget(_group_key(self.id))

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"


def _group_key(group_id: str) -> str:
    # Beside the task records, never a task id (Celery's "celery-taskset-meta-" idea).
    return f"conveyor-group-meta-{group_id}"


def _tree(result: AsyncResult[Any]) -> Any:
    """A result as JSON: a task's id, or [group id, [members...]] for a group."""
    if isinstance(result, ResultSet):
        return [result.id, [_tree(r) for r in result.results]]
    return result.id


def _from_tree(tree: Any, app: Conveyor) -> GroupResult:
    group_id, members = tree
    return GroupResult(
        group_id,
        [
            _from_tree(member, app) if isinstance(member, list) else AsyncResult(member, app)
            for member in members
        ],
        app,
    )


_SUCCESS = frozenset({states.SUCCESS})
# Members whose state is not one record in the backend.
_LOCAL = (EagerResult, ResultSet)


def _settle(
    window: Sequence[int],
    found: Sequence[ResultMeta | None],
    metas: list[ResultMeta | None],
    propagate: bool,
) -> list[int]:
    """Put a window's finished results in ``metas`` (raising the first failure when
    ``propagate``); return the indexes still unfinished. Shared by get and aget."""
    unfinished = []
    for i, meta in zip(window, found, strict=True):
        if meta is None or meta.status not in states.READY_STATES:
            unfinished.append(i)
            continue
        if propagate and meta.status in states.PROPAGATE_STATES:
            raise exception_from_meta(meta)
        metas[i] = meta
    return unfinished


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _read_metas(app: Conveyor, results: Sequence[AsyncResult[Any]]) -> list[ResultMeta | None]:
    """Each result's current record; those in the backend in one round trip per window."""
    metas = [r._eager_meta if isinstance(r, EagerResult) else None for r in results]
    remote = [i for i, r in enumerate(results) if not isinstance(r, _LOCAL)]
    for start in range(0, len(remote), _WINDOW):
        chunk = remote[start : start + _WINDOW]
        raws = app.backend.get_many([results[i].id for i in chunk])
        for i, raw in zip(chunk, raws, strict=True):
            metas[i] = decode_meta(raw) if raw is not None else None
    return metas


def _outcome(meta: ResultMeta, propagate: bool) -> Any:
    if meta.status in states.PROPAGATE_STATES:
        exc = exception_from_meta(meta)
        if propagate:
            raise exc
        return exc
    return meta.result


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
