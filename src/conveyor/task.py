"""Task[P, R]: a function the app knows by name, callable here or on a worker.

``add.delay(2, 3)`` type-checks against ``add``'s own signature (ParamSpec), so a
wrong argument is an editor error before it is a worker error.
"""

from __future__ import annotations

import gc
import inspect
import random
import time
import traceback as traceback_module
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar

from . import states
from .coroutines import is_coroutine, run_to_completion
from .exceptions import MaxRetriesExceededError, Retry

# Re-exported: canvas/, result.py and users' code import new_task_id from here.
from .ids import new_task_id as new_task_id
from .limits import KeySpec
from .message import Envelope
from .result import AsyncResult, EagerResult
from .stores.results import ResultMeta, encode_meta, error_meta

if TYPE_CHECKING:
    from .app import Conveyor
    from .canvas import Signature, chunks

__all__ = ["AsyncTask", "Context", "Task", "current_request"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(slots=True)
class Context:
    """``self.request`` inside a bound task: what this call is and where it came from."""

    id: str | None = None
    task: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    eta: float | None = None
    expires: float | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    is_eager: bool = False
    called_directly: bool = True
    time_limit: float | None = None
    soft_time_limit: float | None = None
    # Workflows (canvas/): the signatures to send after it, and its chord, as sent.
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None
    children: list[str] | None = None  # ids of the tasks it sent while running
    sent_at: float = 0.0  # when the producer sent it (epoch s): time in queue, for metrics

    @classmethod
    def from_envelope(cls, envelope: Envelope, **extra: Any) -> Context:
        """The request a worker runs for a message (``extra``: hostname, delivery info)."""
        return cls(
            id=envelope.id,
            task=envelope.task,
            args=envelope.args,
            kwargs=envelope.kwargs,
            retries=envelope.retries,
            root_id=envelope.root_id,
            parent_id=envelope.parent_id,
            group=envelope.group_id,
            eta=envelope.eta,
            expires=envelope.expires,
            headers=envelope.headers,
            called_directly=False,
            time_limit=envelope.time_limit,
            soft_time_limit=envelope.soft_time_limit,
            callbacks=envelope.callbacks,
            errbacks=envelope.errbacks,
            chord=envelope.chord,
            sent_at=envelope.sent_at,
            **extra,
        )


# The running task's request follows the code that runs it: a thread (each has its own
# context) or an asyncio task (each runs in a copy of its creator's context), so 1,000
# coroutines on one loop each see their own ``self.request``. Tuples, never mutated: a
# copied context shares the value with its creator.
_requests: ContextVar[tuple[Context, ...]] = ContextVar("conveyor_requests", default=())


def current_request() -> Context | None:
    """The request of the task running here (this thread, or this asyncio task)."""
    stack = _requests.get()
    return stack[-1] if stack else None


def push_request(request: Context) -> None:
    _requests.set((*_requests.get(), request))


def pop_request() -> None:
    _requests.set(_requests.get()[:-1])


_DEFAULT_CONTEXT = Context()


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a bulk send builds its messages.

    A ``delay_many`` of 100,000 makes ~300,000 objects that live until it returns (the
    envelopes, their argument lists, the results); as they pile up they set off
    full collections, each walking every object of the process: 4 to 6 of them, half
    of the call's time (bench/send_bench.py, issue 17). None of those objects is in a
    cycle, so there is nothing for a collection to find. Turned back on after, when it
    was on (another thread's own pause is left as it finds it)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Task(Generic[P, R]):
    """A registered task. Create with ``@app.task`` or ``@shared_task``."""

    # Options with Celery's names; per-task values override the app's settings.
    name: str
    bind: bool = False
    ignore_result: bool | None = None
    queue: str | None = None
    priority: int | None = None
    acks_late: bool | None = None
    serializer: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_retries: int | None = 3
    default_retry_delay: float = 180.0
    rate_limit: str | None = None
    track_started: bool | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] | None = None
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    # Flow control across all workers (conveyor/limits.py says how each is read).
    concurrency_limit: int | None = None
    concurrency_key: KeySpec = None
    idempotency_key: KeySpec = None
    idempotency_window: float | None = None

    # Check the arguments of every send against the task's signature (Celery's
    # ``typing``): a call that cannot bind raises TypeError at ``.delay()``.
    typing: bool = True
    # The app a class made by ``app.Task`` belongs to (``class MyTask(app.Task)``).
    _bound_app: Conveyor | None = None

    def __init__(
        self,
        fun: Callable[..., R] | None = None,
        app: Conveyor | None = None,
        name: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """``fun`` is the decorated function; a class-based task (``class MyTask(Task)``
        with a ``run`` method, made with no arguments) has none."""
        self._app = app or type(self)._bound_app
        self._checker: Callable[..., None] | None = None
        if fun is None:
            # A class-based task: its own ``run`` is the body, self already bound.
            fun = self.run
            self.bind = False
            name = name or getattr(type(self), "name", None) or ""
        self._fun = fun
        # What the worker (and an eager call) runs: the body, or the subclass's own
        # ``__call__`` when it has one (a transaction, a context around the run), as
        # Celery's tracer picks ``task`` over ``task.run`` only when ``__call__`` is
        # overridden; decided once here, so the usual task pays nothing per call.
        self.body: Callable[..., R] = (
            self.run if type(self).__call__ is Task.__call__ else self.__call__
        )
        # An ``async def`` body: the asyncio pool awaits it on its loop; the other pools
        # (and eager calls) run it to completion on a loop of their own (coroutines.py).
        self.is_async = inspect.iscoroutinefunction(fun) or inspect.iscoroutinefunction(self.body)
        self.name = name or ""
        for key, value in (options or {}).items():
            if key == "base":
                continue
            setattr(self, key, value)
        self.__doc__ = fun.__doc__ or type(self).__doc__
        self.__name__ = getattr(fun, "__name__", self.name)
        self.__module__ = getattr(fun, "__module__", __name__)
        self.__wrapped__ = fun

    # the app (shared tasks resolve it when used) ---------------------------------------
    @property
    def app(self) -> Conveyor:
        if self._app is not None:
            return self._app
        from .app import current_app

        return current_app()

    # running -----------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> R:
        """The task body (the decorated function)."""
        if self.bind:
            return self._fun(self, *args, **kwargs)
        return self._fun(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the task here and now, like calling the function."""
        return self.run(*args, **kwargs)

    @property
    def request(self) -> Context:
        return current_request() or _DEFAULT_CONTEXT

    # handlers a Task subclass may override (Celery's names and arguments) ------------
    def before_start(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called in the worker before the body runs."""

    def on_success(
        self, retval: Any, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        """Called in the worker when the task succeeded."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called in the worker when the task failed for good."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called in the worker when the task is to be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called in the worker after the task returned or failed (not on a retry)."""

    # checks at send (Celery's) --------------------------------------------------------
    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise TypeError when ``args``/``kwargs`` do not bind to the task's signature
        (Celery checks at ``apply_async`` unless the task has ``typing=False``)."""
        checker = self._checker
        if checker is None:
            from .arguments import argument_checker

            checker = self._checker = argument_checker(self._fun, skip_first=self.bind)
        try:
            checker(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}{str(exc).removeprefix('check')}") from None

    def _check_limits(self, soft: float | None, hard: float | None) -> None:
        soft = self.soft_time_limit if soft is None else soft
        hard = self.time_limit if hard is None else hard
        if soft and hard and soft > hard:
            raise ValueError(
                f"{self.name}: soft_time_limit ({soft}) must be less than or equal to "
                f"time_limit ({hard})"
            )

    # sending -----------------------------------------------------------------------
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send the task to a worker: ``apply_async`` with only the arguments."""
        app = self.app
        if (
            type(self).apply_async is not Task.apply_async
            or "apply_async" in self.__dict__
            or app.conf.raw["task_always_eager"]
        ):
            # A subclass's (or a test's) own apply_async sees every delay, as in Celery.
            return self.apply_async(args, kwargs)
        # The same send as apply_async with no options, without their plumbing: the
        # one-by-one .delay() rate is an issue 17 target (docs/benchmarks.md).
        self._check_limits(None, None)
        return self._ticket(app.producer.delay(self, args, kwargs), False)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        serializer: str | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        idempotency_key: str | None = None,
        idempotency_window: float | None = None,
        link: Any = None,
        link_error: Any = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Send the task with options. ``countdown`` and ``eta`` hold it in the broker
        until due; ``expires`` (seconds or a datetime) revokes it if it starts later.
        A second send with the same ``idempotency_key`` within ``idempotency_window``
        seconds sends nothing and returns the first send's result.
        ``link``/``link_error``: signatures to send with its result when it succeeds, or
        to call once when it fails for good (see :mod:`conveyor.canvas`)."""
        app = self.app
        conf = app.conf.raw
        self._check_limits(soft_time_limit, time_limit)
        if conf["task_always_eager"]:
            if self.typing:
                self.check_arguments(args or (), kwargs or {})
            result = self.apply(args, kwargs, task_id=task_id, headers=headers)
            if link is not None or link_error is not None:
                from .canvas import apply_eager_links

                apply_eager_links(result, link, link_error, app)
            return result
        sent = app.producer.call(
            self,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            queue=queue,
            serializer=serializer,
            idempotency_key=idempotency_key,
            idempotency_window=idempotency_window,
            task_id=task_id,
            expires=expires,
            priority=priority,
            headers=headers,
            ignore_result=ignore_result,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            link=link,
            link_error=link_error,
            workflow=options,
        )
        return self._ticket(sent, bool(ignore_result))

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Django: ``delay`` once the current database transaction commits; nothing is
        sent if it rolls back (Celery's ``DjangoTask.delay_on_commit``). Returns None:
        the task id does not exist until the commit."""
        from .contrib.django.transaction import on_commit

        on_commit(lambda: self.apply_async(args, kwargs))

    def apply_async_on_commit(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """Django: ``apply_async`` once the current transaction commits (see
        :meth:`delay_on_commit`)."""
        from .contrib.django.transaction import on_commit

        on_commit(lambda: self.apply_async(args, kwargs, **options))

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """:meth:`delay` without blocking the running event loop: ``await add.adelay(2, 3)``."""
        return await self.aapply_async(args, kwargs)

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        expires: datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        serializer: str | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        idempotency_key: str | None = None,
        idempotency_window: float | None = None,
        link: Any = None,
        link_error: Any = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """:meth:`apply_async` without blocking the running event loop: the message is
        published with the broker's async client (Redis) or on a thread (other stores).
        With ``task_always_eager`` the task runs here, as ``apply_async`` does."""
        if self.app.conf.raw["task_always_eager"]:
            return self.apply_async(
                args,
                kwargs,
                countdown=countdown,
                eta=eta,
                expires=expires,
                queue=queue,
                priority=priority,
                task_id=task_id,
                headers=headers,
                serializer=serializer,
                ignore_result=ignore_result,
                time_limit=time_limit,
                soft_time_limit=soft_time_limit,
                idempotency_key=idempotency_key,
                idempotency_window=idempotency_window,
                link=link,
                link_error=link_error,
                **options,
            )
        self._check_limits(soft_time_limit, time_limit)
        sent = await self.app.producer.acall(
            self,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            queue=queue,
            serializer=serializer,
            idempotency_key=idempotency_key,
            idempotency_window=idempotency_window,
            task_id=task_id,
            expires=expires,
            priority=priority,
            headers=headers,
            ignore_result=ignore_result,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            link=link,
            link_error=link_error,
            workflow=options,
        )
        return self._ticket(sent, bool(ignore_result))

    def _ticket(self, task_id: str, ignore_result: bool) -> AsyncResult[R]:
        """The result of a send; with no result to be stored, ``get()`` returns None at
        once instead of waiting forever (Celery's ``AsyncResult.ignored``)."""
        result: AsyncResult[R] = AsyncResult(task_id, self.app, self.name)
        if ignore_result or (
            self.ignore_result
            if self.ignore_result is not None
            else self.app.conf.raw["task_ignore_result"]
        ):
            result.ignored = True
        return result

    def delay_many(
        self,
        calls: Iterable[Sequence[Any]],
        *,
        queue: str | None = None,
        priority: int | None = None,
    ) -> list[AsyncResult[R]]:
        """Send many calls of this task in a few round trips (the bulk API).

        ``calls`` holds one argument tuple per call: ``add.delay_many([(1, 2), (3, 4)])``.
        """
        app = self.app
        producer = app.producer
        if app.conf.task_always_eager:
            envelopes = [producer.envelope(self, args, None, priority=priority) for args in calls]
            for envelope in envelopes:  # what could not travel fails here too
                producer.encode(envelope, producer.serializer_for(self))
            return [self.apply(e.args, e.kwargs, task_id=e.id) for e in envelopes]
        with gc_paused():
            envelopes = producer.bulk(self, calls, queue=queue, priority=priority)
            name = self.name
            return [AsyncResult(e.id, app, name) for e in envelopes]

    # eager -------------------------------------------------------------------------
    def _run_with_autoretry(self, request: Context) -> R:
        """Run the body; an exception listed in ``autoretry_for`` becomes a retry."""
        try:
            value: Any = self.body(*request.args, **request.kwargs)
            if is_coroutine(value):
                value = run_to_completion(value)
            return value  # type: ignore[no-any-return]  # an async body's R is its value
        except Retry:
            raise
        except Exception as exc:
            self.autoretry(exc, request)
            raise

    def autoretry(self, exc: Exception, request: Context) -> None:
        """When ``exc`` is listed in ``autoretry_for``, retry: raises :class:`Retry`, or
        ``exc`` itself once the retries are used up. Returns when it is not listed."""
        if self.autoretry_for and isinstance(exc, self.autoretry_for):
            options = dict(self.retry_kwargs or {})
            options.pop("countdown", None)
            self.retry(exc=exc, countdown=self.backoff_delay(request.retries), **options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        headers: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[R]:
        """Run the task in this process now and return an :class:`EagerResult`.

        Exceptions are captured in the result, or raised when ``task_eager_propagates``.
        """
        task_id = task_id or new_task_id()
        request = Context(
            id=task_id,
            task=self.name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            retries=int(options.get("retries", 0)),
            is_eager=True,
            called_directly=False,
            root_id=task_id,
            headers=dict(headers or {}),
        )
        push_request(request)
        try:
            try:
                value = self._run_with_autoretry(request)
            except Retry as retry:
                if retry.eager_result is None:
                    raise
                return retry.eager_result  # type: ignore[no-any-return]
        except Exception as exc:
            if self.app.conf.task_eager_propagates:
                raise
            meta = error_meta(
                task_id,
                states.FAILURE,
                exc,
                traceback=traceback_module.format_exc(),
                name=self.name,
            )
        else:
            meta = ResultMeta(
                task_id=task_id,
                status=states.SUCCESS,
                result=value,
                date_done=time.time(),
                name=self.name,
            )
        finally:
            pop_request()
        return EagerResult(task_id, meta, self.app)

    # retries and progress ----------------------------------------------------------
    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | float | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> NoReturn:
        """Run this task again later, and end this attempt by raising :class:`Retry`.

        It raises by itself, so ``self.retry(...)`` without ``raise`` works too. The next
        attempt waits in the broker like any ETA task (never in a worker slot), after
        ``countdown`` seconds, at ``eta``, or after ``default_retry_delay``. When the
        retries are used up, ``exc`` is raised (the task fails with it), or
        :class:`MaxRetriesExceededError` when there is none.
        """
        request = self.request
        if request.id is None or request.called_directly:
            # Called as a plain function: there is no message to send again.
            if exc is not None:
                raise exc
            raise RuntimeError(f"{self.name}.retry() called outside a worker")
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}]: max retries ({limit}) exceeded",
                task_args=request.args,
                task_kwargs=request.kwargs,
            )
        if countdown is None and eta is None:
            countdown = self.default_retry_delay
        if request.is_eager:
            # Eager mode has no broker to wait in: the next attempt runs now.
            result = self.apply(
                request.args if args is None else args,
                request.kwargs if kwargs is None else kwargs,
                task_id=request.id,
                retries=request.retries + 1,
            )
            raise Retry(exc=exc, when=countdown, eager_result=result)
        self.app.producer.retry(
            self, request, args, kwargs, countdown=countdown, eta=eta, queue=options.get("queue")
        )
        from .producer import to_epoch

        raise Retry(exc=exc, when=to_epoch(eta) if eta is not None else countdown)

    def replace(self, sig: Signature[Any] | Mapping[str, Any]) -> Any:
        """Hand this task's place in its workflow to ``sig`` (a task, chain, group or
        chord), as Celery's ``Task.replace``: ``sig``'s last task takes this task's id,
        callbacks, errbacks and chord, and this task ends without a result of its own.
        ``return self.replace(sig)`` or ``raise self.replace(sig)`` (it raises by
        itself in a worker; in eager mode it runs ``sig`` and returns its result)."""
        from .canvas.replace import replacement
        from .exceptions import Ignore

        request = self.request
        if request.id is None or request.called_directly:
            raise RuntimeError(f"{self.name}.replace() called outside a worker")
        new = replacement(sig, request, self.app)
        if request.is_eager:
            return new.apply().get()
        new.apply_async()
        raise Ignore(f"replaced by {new!r}")

    def backoff_delay(self, retries: int) -> float:
        """The countdown before retry number ``retries + 1`` under ``autoretry_for``.

        With ``retry_backoff`` (True means a 1 s base) the delay doubles each time up
        to ``retry_backoff_max``. ``retry_jitter`` then picks a delay in the upper half
        of that window ("equal jitter"): spread out, yet each retry waits at least as
        long as the one before. Without backoff it is ``default_retry_delay``.
        """
        kwargs = self.retry_kwargs or {}
        if "countdown" in kwargs:
            return float(kwargs["countdown"])
        base = self.retry_backoff
        if not base:
            return float(self.default_retry_delay)
        window: float = min(float(self.retry_backoff_max), float(base) * 2**retries)
        if self.retry_jitter:
            return window / 2 + random.uniform(0, window / 2)
        return window

    def update_state(
        self,
        task_id: str | None = None,
        state: str | None = None,
        meta: Any = None,
        **kwargs: Any,
    ) -> None:
        """Record a state for a running task (e.g. ``state="PROGRESS", meta={"done": 3}``);
        callers read ``meta`` from ``AsyncResult.info`` while the task runs."""
        task_id = task_id or self.request.id
        if task_id is None:
            raise RuntimeError("update_state() needs a task_id outside a running task")
        status = state or states.PENDING
        record = ResultMeta(
            task_id=task_id, status=status, result=meta, name=self.name, date_done=time.time()
        )
        self.app.backend.store(task_id, encode_meta(record), status in states.READY_STATES)

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:
        return AsyncResult(task_id, self.app, self.name)

    # signatures (conveyor.canvas) ----------------------------------------------------
    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature of this call, to chain, group or send later: ``add.s(2, 2)``.
        In a chain it receives the previous result as its first argument."""
        from .canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """An immutable signature: in a chain, the previous result is not passed."""
        from .canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature[R]:
        """A signature with sending options: ``add.signature((2, 2), countdown=10)``."""
        from .canvas import Signature

        return Signature(self, args, kwargs, **options)

    subtask = signature

    def map(self, it: Iterable[Any]) -> Signature[list[R]]:
        """One message that calls this task on each item, in turn, in one worker."""
        from .canvas import MAP, Signature

        return Signature(MAP, (self.s().to_dict(), list(it)), app=self._app)

    def starmap(self, it: Iterable[Sequence[Any]]) -> Signature[list[R]]:
        """As :meth:`map`, each item being the argument list of one call."""
        from .canvas import STARMAP, Signature

        return Signature(STARMAP, (self.s().to_dict(), [list(a) for a in it]), app=self._app)

    def chunks(self, it: Iterable[Sequence[Any]], n: int) -> chunks:
        """The calls in ``it`` split in messages of ``n`` calls each, sent as a group:
        ``add.chunks(zip(xs, ys), 100).apply_async().get()`` is a list of lists."""
        from .canvas import chunks

        return chunks(self.s(), it, n, app=self._app)

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"


if TYPE_CHECKING:

    class AsyncTask(Task[P, R]):
        """How the type checker sees a task made from an ``async def`` returning ``R``:
        ``delay``/``adelay`` give ``AsyncResult[R]``, and calling it directly gives the
        coroutine, as calling the function does. (At run time it is a plain Task.)"""

        def __call__(  # type: ignore[override]
            self, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, R]: ...

else:
    AsyncTask = Task
