"""Workflows: signatures, chain, group and chord (Celery's canvas).

A :class:`Signature` is one task call packed as data: the task's name, its arguments
and its sending options. It goes to JSON and back (``to_dict``/``from_dict``), so a
workflow can be stored, sent, and applied by a worker. Signatures combine three ways:

    chain(a, b, c)       a runs; the worker that finishes it sends b with a's result
                         prepended to b's arguments (unless b is immutable: ``.si()``)
    group(a, b, c)       every member is sent at once (in bulk), tagged with the group id
    chord(header, body)  a group, then the body with the list of the header's results

Nothing polls. A chain travels as the callbacks of each message (``Envelope.callbacks``,
kept flat: step 1's message carries ``chain(step 2, ..., step n)``). A chord is joined
by the result backend: each header task's result is stored and counted in one atomic
step, and the step that counts the last one also queues the body (``chord_part`` in
``stores/``; the design is in docs/architecture.md, "Workflows").

Every id in a workflow is chosen ("frozen") before its first message leaves, so the
caller holds the final result at once, and a failure can be written onto every step
that will now never run.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import states
from .exceptions import ChordError
from .message import encode_envelope
from .result import AsyncResult, EagerResult, GroupResult
from .stores.results import ChordBody, ChordSpec
from .task import new_task_id

if TYPE_CHECKING:
    from .app import Conveyor
    from .task import Task

__all__ = [
    "BUILTIN_TASKS",
    "Signature",
    "chain",
    "chord",
    "chunks",
    "group",
    "maybe_signature",
    "signature",
]

R = TypeVar("R")

CHORD_JOIN = "conveyor.chord_join"
ACCUMULATE = "conveyor.accumulate"
MAP = "conveyor.map"
STARMAP = "conveyor.starmap"
BUILTIN_TASKS = frozenset({CHORD_JOIN, ACCUMULATE, MAP, STARMAP})

_CALLBACKS = ("link", "link_error")
# Options a group member may have and still be sent in the group's bulk publish; any
# other (countdown, eta, an option this module does not know) sends it on its own.
_BULK_OPTIONS = frozenset(
    {
        "task_id", "queue", "priority", "expires", "headers", "serializer",
        "ignore_result", "time_limit", "soft_time_limit", "link", "link_error",
        "root_id", "parent_id", "group_id", "chord",
    }
)  # fmt: skip
_DATETIME_OPTIONS = ("eta", "expires")


class Signature(Generic[R]):
    """One task call as data: ``add.s(2, 2)``, ``add.si(2, 2)`` (immutable),
    ``signature("tasks.add", args=(2, 2), countdown=10)``.

    ``sig.delay(...)``/``sig.apply_async(...)`` send it, with any arguments given there
    prepended to its own (partial application); ``sig(...)`` runs it here.
    """

    subtask_type: str | None = None

    def __init__(
        self,
        task: str | Task[..., R] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
        app: Conveyor | None = None,
        **ex: Any,
    ) -> None:
        self._type: Task[..., R] | None = None
        if task is None or isinstance(task, str):
            self.task = task or ""
        else:
            self.task = task.name
            self._type = task
            app = app or task._app
        self.args: tuple[Any, ...] = tuple(args or ())
        self.kwargs: dict[str, Any] = dict(kwargs or {})
        self.options: dict[str, Any] = _clean_options({**(options or {}), **ex})
        self.immutable = immutable
        self._app = app

    # what it calls ------------------------------------------------------------------
    @property
    def app(self) -> Conveyor:
        """The app given, else its task's, else (a workflow) its first member's, else
        the current app."""
        found = self._own_app()
        if found is not None:
            return found
        from .app import current_app

        return current_app()

    def _own_app(self) -> Conveyor | None:
        if self._app is not None:
            return self._app
        if self._type is not None:
            return self._type.app
        for member in self._members():
            found = member._own_app()
            if found is not None:
                return found
        return None

    def _members(self) -> list[Signature[Any]]:
        return []

    @property
    def type(self) -> Task[..., R]:
        """The task: the app's registered one, or a stand-in that can only be sent."""
        if self._type is None:
            app = self.app
            found = app.tasks.get(self.task)
            if found is None:
                from .app import _not_here
                from .task import Task

                found = Task(_not_here(self.task), app, self.task)
            self._type = found
        return self._type

    @property
    def id(self) -> str | None:
        """The task id, once frozen (or set with ``.set(task_id=...)``)."""
        task_id: str | None = self.options.get("task_id")
        return task_id

    # building -----------------------------------------------------------------------
    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature[R]:
        """A copy, with ``args`` prepended and ``kwargs`` merged unless immutable."""
        new = copy.copy(self)
        new.args, new.kwargs = self._merge(args, kwargs)
        new.options = _merge_options(self.options, _clean_options(options))
        return new

    def _merge(
        self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.immutable:
            return self.args, dict(self.kwargs)
        return (*(args or ()), *self.args), {**self.kwargs, **(kwargs or {})}

    def set(self, immutable: bool | None = None, **options: Any) -> Signature[R]:
        """Set sending options (``queue=``, ``countdown=``, ``priority=``...) in place."""
        if immutable is not None:
            self.immutable = immutable
        self.options = _merge_options(self.options, _clean_options(options))
        return self

    def set_immutable(self, immutable: bool) -> None:
        self.immutable = immutable

    def link(self, callback: Signature[Any] | Mapping[str, Any]) -> Signature[Any]:
        """Send ``callback`` with this task's result when it succeeds."""
        sig = maybe_signature(callback, self._app)
        self.options.setdefault("link", []).append(sig.to_dict())
        return sig

    def link_error(self, errback: Signature[Any] | Mapping[str, Any]) -> Signature[Any]:
        """Call ``errback`` once if this task fails for good (after its retries).

        An errback whose task takes ``(request, exc, traceback)`` runs in the worker
        that saw the failure; one that takes a single argument is sent with the failed
        task's id (both as in Celery)."""
        sig = maybe_signature(errback, self._app)
        self.options.setdefault("link_error", []).append(sig.to_dict())
        return sig

    def on_error(self, errback: Signature[Any] | Mapping[str, Any]) -> Signature[R]:
        """``link_error`` that returns this signature, for building in one expression."""
        self.link_error(errback)
        return self

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
    ) -> AsyncResult[R]:
        """Choose the task id now (kept when sent) and return its result."""
        options = self.options
        if _id:
            options["task_id"] = _id
        task_id: str = options.setdefault("task_id", new_task_id())
        if group_id:
            options["group_id"] = group_id
        return AsyncResult(task_id, self.app, self.task)

    # sending and running ------------------------------------------------------------
    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        merged_args, merged_kwargs = self._merge(args, kwargs)
        merged = _merge_options(self.options, _clean_options(options))
        return self.type.apply_async(merged_args, merged_kwargs, **merged)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[R]:
        return self.apply_async(args, kwargs)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Run it in this process now (and its links after it): an EagerResult, or a
        GroupResult of them for a group."""
        merged_args, merged_kwargs = self._merge(args, kwargs)
        merged = _merge_options(self.options, _clean_options(options))
        result = self.type.apply(merged_args, merged_kwargs, task_id=merged.get("task_id"))
        apply_eager_links(result, merged.get("link"), merged.get("link_error"), self.app)
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task body here, with the partial arguments applied."""
        merged_args, merged_kwargs = self._merge(args, kwargs)
        return self.type.run(*merged_args, **merged_kwargs)

    def __or__(self, other: Signature[Any]) -> chain:
        if not isinstance(other, Signature):
            return NotImplemented
        return chain(self, other, app=self._app)

    # as data ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (Celery's layout); :meth:`from_dict` reads it back."""
        return {
            "task": self.task,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "options": _json_options(self.options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any], app: Conveyor | None = None) -> Signature[Any]:
        """The signature (or chain, group, chord, chunks) that ``data`` describes."""
        kind = data.get("subtask_type")
        options = _read_options(data.get("options") or {})
        kwargs = data.get("kwargs") or {}
        if kind == "chain":
            return chain(*kwargs.get("tasks", ()), app=app, **options)
        if kind == "group":
            return group(*kwargs.get("tasks", ()), app=app, **options)
        if kind == "chord":
            return chord(kwargs.get("header", ()), kwargs.get("body"), app=app, **options)
        if kind == "chunks":
            return chunks(kwargs["task"], kwargs["it"], kwargs["n"], app=app, **options)
        if kind is not None:
            raise ValueError(f"unknown signature type {kind!r}")
        return Signature(
            data["task"],
            data.get("args") or (),
            kwargs,
            options,
            immutable=bool(data.get("immutable", False)),
            app=app,
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Signature):
            return self.to_dict() == other.to_dict()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like Celery's (a dict)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{'%' if self.immutable else ''}{self.task}({', '.join(parts)})"


class _Composite(Signature[Any]):
    """What chain and group share: a list of member signatures, sent by calling."""

    tasks: list[Signature[Any]]

    def _members(self) -> list[Signature[Any]]:
        return self.tasks

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Send it (as Celery's ``chain(...)()`` and ``group(...)()`` do)."""
        return self.apply_async(args, kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {"tasks": [t.to_dict() for t in self.tasks]}
        return data


class chain(_Composite):
    """Tasks run one after the other, each given the result of the one before:
    ``chain(a.s(1), b.s(), c.s())()`` or ``(a.s(1) | b.s() | c.s())()``.

    The result is the last task's, with ``.parent`` leading back to the first. A group
    followed by another step becomes a chord (its results go to that step together).
    Options: ``link`` goes on the last step, ``link_error`` on every step (so it runs
    once, for whichever fails), the rest on the first step.
    """

    subtask_type = "chain"
    tasks: list[Signature[Any]]

    def __init__(self, *tasks: Any, app: Conveyor | None = None, **options: Any) -> None:
        super().__init__("conveyor.chain", app=app, **options)
        steps: list[Signature[Any]] = []
        for item in _members(tasks):
            sig = maybe_signature(item, app)
            if type(sig) is chain and not sig.options and not sig.args and not sig.kwargs:
                steps.extend(sig.tasks)
            else:
                steps.append(sig)
        self.tasks = steps

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> chain:
        new = copy.copy(self)
        new.args, new.kwargs = self._merge(args, kwargs)
        new.options = _merge_options(self.options, _clean_options(options))
        new.tasks = [t.clone() for t in self.tasks]
        return new

    def _steps(self) -> list[Signature[Any]]:
        """The steps as they run: nested chains flattened, and a group followed by a
        step turned into a chord with that step as its body (Celery does the same)."""
        flat: list[Signature[Any]] = []
        for step in self.tasks:
            if isinstance(step, chain):
                flat.extend(step._with_options_pushed())
            else:
                flat.append(step)
        # From the end, as Celery's prepare_steps does: a group followed by a step
        # becomes chord(group, step), where that step may itself be such a chord, so
        # group | group | task runs the task once with the list (not once per member).
        out: list[Signature[Any]] = []
        for step in reversed(flat):
            if isinstance(step, group) and out:
                out[0] = chord(step, out[0], app=self._app, **step.options)
            else:
                out.insert(0, step)
        self.tasks = out
        return out

    def _with_options_pushed(self) -> list[Signature[Any]]:
        steps = self._steps()
        options = dict(self.options)
        for key in ("task_id", "group_id"):  # the chain's id is its last task's
            if key in options and steps:
                steps[-1].set(**{key: options.pop(key)})
        for data in options.pop("link", ()):
            steps[-1].link(data)
        for data in options.pop("link_error", ()):
            for step in steps:
                step.link_error(data)
        if steps and (options or self.args or self.kwargs):
            steps[0] = steps[0].clone(self.args, self.kwargs, **options)
        return steps

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
    ) -> AsyncResult[Any]:
        steps = self._steps()
        if not steps:
            raise ValueError("an empty chain has no result")
        result: AsyncResult[Any] | None = None
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            frozen = step.freeze(_id if last else None, group_id if last else None)
            if result is not None:
                _attach_parent(frozen, result)
            result = frozen
        assert result is not None
        return result

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        if self.app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        new = self.clone(args, kwargs, **options)
        steps = new._with_options_pushed()
        if not steps:
            raise ValueError("cannot send an empty chain")
        result = chain(*steps, app=self._app).freeze()
        first, rest = steps[0], steps[1:]
        if rest:
            first.link(rest[0] if len(rest) == 1 else chain(*rest, app=self._app))
        first.apply_async()
        return result

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[Any]:
        steps = self.clone(args, kwargs, **options)._with_options_pushed()
        result: EagerResult[Any] | None = None
        for step in steps:
            if result is None:
                result = _eager(step.apply())
            elif result.successful():
                result = _eager(step.apply((result.get(),)))
            else:
                break
        if result is None:
            raise ValueError("cannot run an empty chain")
        return result

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks) or "chain()"


class group(_Composite):
    """Tasks sent together, run in parallel: ``group(add.s(i, i) for i in range(10))()``
    returns a :class:`GroupResult` whose ``get()`` is the list of results, in order.

    Plain task members are published in bulk (one round trip per thousand)."""

    subtask_type = "group"
    tasks: list[Signature[Any]]

    def __init__(self, *tasks: Any, app: Conveyor | None = None, **options: Any) -> None:
        super().__init__("conveyor.group", app=app, **options)
        members = (maybe_signature(t, app) for t in _members(tasks))
        self.tasks: list[Signature[Any]] = _unrolled(members)

    def link(self, callback: Signature[Any] | Mapping[str, Any]) -> Signature[Any]:
        """As Celery's: an immutable copy of ``callback`` linked to the first task, so it
        runs once for the group (use a chord to run something with all the results)."""
        sig = maybe_signature(callback, self._app).clone().set(immutable=True)
        if self.tasks:
            self.tasks[0].link(sig)
        return sig

    def link_error(self, errback: Signature[Any] | Mapping[str, Any]) -> Signature[Any]:
        """As Celery's: ``errback`` linked to every task (each failing task calls it)."""
        sig = maybe_signature(errback, self._app)
        for task in self.tasks:
            task.link_error(sig.clone())
        return sig

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> group:
        new = copy.copy(self)
        new.options = _merge_options(self.options, _clean_options(options))
        new.tasks = [t.clone(args, kwargs) for t in self.tasks]
        return new

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
    ) -> GroupResult:
        if _id:
            self.options["task_id"] = _id
        gid: str = self.options.setdefault("task_id", new_task_id())
        results = [t.freeze(group_id=gid) for t in self.tasks]
        return GroupResult(gid, results, self.app)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        app = self.app
        if options.get("link") is not None:
            raise TypeError("cannot add a link to a group: use a chord (as in Celery)")
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        merged = _merge_options(self.options, _clean_options(options))
        gid: str = merged.pop("task_id", None) or new_task_id()
        merged.pop("group_id", None)
        results: list[AsyncResult[Any]] = []
        batches: dict[tuple[str, int], list[bytes]] = {}
        for member in self.tasks:
            member_options = _merge_options(merged, member.options)
            member_options["group_id"] = gid
            if _bulk(member, member_options):
                member_args, member_kwargs = member._merge(args, kwargs)
                queue, priority, body, task_id = _message(
                    member.type, member_args, member_kwargs, member_options
                )
                batches.setdefault((queue, priority), []).append(body)
                results.append(AsyncResult(task_id, app, member.task))
            else:
                sent = member.clone(args, kwargs)
                sent.options = member_options
                results.append(sent.apply_async())
        for (queue, priority), bodies in batches.items():
            app.broker.publish(queue, bodies, priority=priority)
        return GroupResult(gid, results, app)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        gid = options.get("task_id") or self.options.get("task_id") or new_task_id()
        results = [t.clone(args, kwargs).apply() for t in self.tasks]
        return GroupResult(gid, results, self.app)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Signature[Any]]:
        return iter(self.tasks)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"


class chord(Signature[Any]):
    """A group (the header) whose results, once all are in, go as one list to the body:
    ``chord(add.s(i, i) for i in range(10))(tsum.s())`` or ``chord(header, body)()``.

    The result is the body's, with ``.parent`` the header's :class:`GroupResult`. The
    body runs exactly once: the backend stores each header result and counts it in one
    atomic step, idempotent per header task, so retries and redeliveries never count
    twice, and the step that counts the last one queues the body. If a header task
    fails, the body does not run and its result is a :class:`ChordError` naming the
    task. A header member may be a task or a chain ending in a task.
    """

    subtask_type = "chord"
    tasks: list[Signature[Any]]

    def __init__(
        self,
        header: Any = (),
        body: Signature[Any] | Mapping[str, Any] | None = None,
        app: Conveyor | None = None,
        **options: Any,
    ) -> None:
        super().__init__("conveyor.chord", app=app, **options)
        members = header.tasks if isinstance(header, group) else _members((header,))
        tasks: list[Signature[Any]] = []
        for item in members:
            sig = maybe_signature(item, app)
            # A group inside the header adds its tasks to the header.
            tasks.extend(sig.tasks if isinstance(sig, group) else (sig,))
        self.tasks = tasks
        self.body: Signature[Any] | None = None if body is None else maybe_signature(body, app)

    def _members(self) -> list[Signature[Any]]:
        return [*self.tasks, *([self.body] if self.body is not None else [])]

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> chord:
        new = copy.copy(self)
        new.options = _merge_options(self.options, _clean_options(options))
        new.tasks = [t.clone(args, kwargs) for t in self.tasks]
        new.body = self.body.clone() if self.body is not None else None
        return new

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
    ) -> AsyncResult[Any]:
        if self.body is None:
            raise TypeError("a chord without a body has no result to freeze")
        gid: str = self.options.setdefault("task_id", new_task_id())
        header = GroupResult(gid, [t.freeze(group_id=gid) for t in self.tasks], self.app)
        body = self.body.freeze(_id)
        _attach_parent(body, header)
        return body

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        body: Signature[Any] | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        app = self.app
        new = self.clone(args, kwargs)
        if body is not None:
            new.body = maybe_signature(body, self._app).clone()
        if new.body is None:
            raise TypeError("a chord needs a body: chord(header)(body) or chord(header, body)")
        if app.conf.task_always_eager:
            return new.apply(**options)
        merged = _merge_options(new.options, _clean_options(options))
        for data in merged.pop("link", ()):
            new.body.link(data)
        for data in merged.pop("link_error", ()):
            new.body.link_error(data)
        placement: dict[str, Any] = {
            k: merged.pop(k) for k in ("root_id", "parent_id") if k in merged
        }
        merged.pop("group_id", None)
        chord_id = merged.pop("task_id", None)
        if chord_id:
            new.options["task_id"] = chord_id
        new.tasks = [_countable(member) for member in new.tasks]
        result = new.freeze()
        gid: str = new.options["task_id"]
        if not new.tasks:
            new.body.apply_async(([],), **placement)
            return result
        counted = [_last_task(member) for member in new.tasks]
        for task in counted:
            task.options["chord"] = {"id": gid}
        members = [task.options["task_id"] for task in counted]
        spec = ChordSpec(
            gid,
            members,
            _join_message(new.body, gid, placement),
            app.broker.colocated_with(app.backend),
        )
        # The record first: a header task may finish before the last one is even sent.
        app.backend.chord_start(spec)
        group(*new.tasks, app=self._app).apply_async(task_id=gid, **placement, **merged)
        return result

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[Any]:
        body = options.pop("body", None)
        body = maybe_signature(body, self._app) if body is not None else self.body
        if body is None:
            raise TypeError("a chord needs a body")
        header = [t.clone(args, kwargs).apply() for t in self.tasks]
        for task, result in zip(self.tasks, header, strict=True):
            if not result.successful():
                chord_id = self.options.get("task_id") or "(eager)"
                text = _failure_text(chord_id, task.id or result.id, result._meta())
                return _eager_failure(body, ChordError(text))
        return _eager(body.apply(([r.get() for r in header],)))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``chord(header)(body)``: send it with this body (Celery's spelling)."""
        body = args[0] if args else kwargs.pop("body", None)
        return self.apply_async((), body=body, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["kwargs"] = {
            "header": [t.to_dict() for t in self.tasks],
            "body": self.body.to_dict() if self.body is not None else None,
        }
        return data

    def __repr__(self) -> str:
        header = ", ".join(repr(t) for t in self.tasks)
        return f"chord([{header}], {self.body!r})"


class chunks(Signature[Any]):
    """``add.chunks(zip(xs, ys), 10)``: the calls split in parts of ``n``, each part one
    message that runs its calls in turn; applying it sends them as a group."""

    subtask_type = "chunks"

    def __init__(
        self,
        task: Signature[Any] | Mapping[str, Any],
        it: Iterable[Sequence[Any]],
        n: int,
        app: Conveyor | None = None,
        **options: Any,
    ) -> None:
        if n < 1:
            raise ValueError("chunks need n >= 1")
        self.task_sig = maybe_signature(task, app)
        self.it = [list(call) for call in it]
        self.n = int(n)
        super().__init__(
            "conveyor.chunks",
            kwargs={"task": self.task_sig.to_dict(), "it": self.it, "n": self.n},
            app=app or self.task_sig._app,
            **options,
        )

    def group(self) -> group:
        data = self.task_sig.to_dict()
        parts = (self.it[i : i + self.n] for i in range(0, len(self.it), self.n))
        return group(
            (Signature(STARMAP, (data, part), app=self._app) for part in parts), app=self._app
        )

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        return self.group().apply_async(**{**self.options, **options})

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        return self.group().apply()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async()


# --- building blocks ---------------------------------------------------------------------


def signature(
    varies: str | Signature[Any] | Mapping[str, Any] | Task[..., Any],
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    app: Conveyor | None = None,
    **options: Any,
) -> Signature[Any]:
    """A signature from a task name (``signature("tasks.add", args=(2, 2))``), a task,
    a signature (copied) or its dict (``to_dict()``, e.g. read back from JSON)."""
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies, app)
    return Signature(varies, args, kwargs, app=app, **options)


def maybe_signature(
    value: Signature[Any] | Mapping[str, Any], app: Conveyor | None = None
) -> Signature[Any]:
    """``value`` itself when it is a signature, else the signature its dict describes."""
    if isinstance(value, Signature):
        return value
    if isinstance(value, Mapping):
        return Signature.from_dict(value, app)
    raise TypeError(f"expected a signature or its dict, got {type(value).__name__}")


def signature_dicts(value: Any) -> list[dict[str, Any]] | None:
    """``link=``/``link_error=`` as the envelope carries them: a list of dicts."""
    if value is None:
        return None
    items = [value] if isinstance(value, (Signature, Mapping)) else list(value)
    return [
        dict(item) if isinstance(item, Mapping) else maybe_signature(item).to_dict()
        for item in items
    ] or None


def _unrolled(members: Iterable[Signature[Any]]) -> list[Signature[Any]]:
    """A group's members with nested groups unrolled into it, as Celery does: the
    results of ``group(group(a, b), c)`` are ``[a, b, c]``, not ``[[a, b], c]``. A nested
    group's own options go to each of its tasks."""
    out: list[Signature[Any]] = []
    for member in members:
        if isinstance(member, group):
            options = {k: v for k, v in member.options.items() if k != "task_id"}
            out.extend(t.clone(**options) if options else t for t in member.tasks)
        else:
            out.append(member)
    return out


def _members(items: tuple[Any, ...]) -> list[Any]:
    """``f(a, b)`` or ``f([a, b])`` or ``f(generator)``: the members, as a list."""
    if len(items) == 1 and not isinstance(items[0], (Signature, Mapping)):
        return list(items[0])
    return list(items)


def _clean_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in _CALLBACKS:
        if key in out:
            dicts = signature_dicts(out[key])
            if dicts:
                out[key] = dicts
            else:
                del out[key]
    return out


def _merge_options(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``; callback lists are joined, not replaced."""
    out = dict(base)
    for key in _CALLBACKS:
        if key in out:
            out[key] = list(out[key])
    for key, value in extra.items():
        if key in _CALLBACKS and key in out:
            out[key].extend(d for d in value if d not in out[key])
        elif key in _CALLBACKS:
            out[key] = list(value)
        else:
            out[key] = value
    return out


def _json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in _DATETIME_OPTIONS:
        value = out.get(key)
        if isinstance(value, datetime):
            out[key] = {"datetime": value.isoformat()}
    return out


def _read_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in _DATETIME_OPTIONS:
        value = out.get(key)
        if isinstance(value, Mapping) and "datetime" in value:
            out[key] = datetime.fromisoformat(value["datetime"])
    return out


def _attach_parent(result: AsyncResult[Any], parent: AsyncResult[Any]) -> None:
    """Make ``parent`` the parent of the first step behind ``result``."""
    node = result
    while node._parent is not None and node._parent is not parent:
        node = node._parent
    node._parent = parent


def _bulk(member: Signature[Any], options: Mapping[str, Any]) -> bool:
    """Can this group member go in the group's bulk publish? A plain task whose options
    the bulk path knows, and no send-time feature of its own (an idempotency key)."""
    return (
        type(member) is Signature
        and _BULK_OPTIONS.issuperset(options)
        and not getattr(member.type, "idempotency_key", None)
    )


def _countable(member: Signature[Any]) -> Signature[Any]:
    """A chord header member whose result is one task's: a chain ending in a group, or a
    chord whose body is a group, gets that group collected by one more task (Celery's
    accumulate), so its list is one result of the header, as in Celery."""
    if isinstance(member, chain):
        steps = member._steps()
        if steps and not isinstance(steps[-1], chain | group):
            steps[-1] = _countable(steps[-1])
        elif steps:
            steps[-1] = _collected(steps[-1])
    elif isinstance(member, chord) and member.body is not None:
        body = member.body
        member.body = _collected(body) if isinstance(body, group) else _countable(body)
    return member


def _collected(sig: Signature[Any]) -> Signature[Any]:
    accumulate: Signature[Any] = Signature(ACCUMULATE, app=sig._app)
    return chord(sig, accumulate, app=sig._app) if isinstance(sig, group) else sig


def _last_task(member: Signature[Any]) -> Signature[Any]:
    """The task of a chord header member whose result the chord counts."""
    if isinstance(member, chain):
        steps = member._steps()
        if steps:
            return _last_task(steps[-1])
    elif isinstance(member, chord) and member.body is not None:
        return _last_task(member.body)  # a nested chord counts when its body ends
    elif type(member) is Signature:
        return member
    raise ValueError(f"a chord header member must be a task, chain or chord: {member!r}")


def _message(
    task: Task[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[str, int, bytes, str]:
    """What ``task.apply_async(args, kwargs, **options)`` would publish, not published:
    (queue, priority level, body, task id)."""
    app = task.app
    envelope = task._envelope(
        args,
        kwargs,
        task_id=options.get("task_id"),
        expires=options.get("expires"),
        priority=options.get("priority"),
        headers=options.get("headers"),
        ignore_result=options.get("ignore_result"),
        time_limit=options.get("time_limit"),
        soft_time_limit=options.get("soft_time_limit"),
        link=options.get("link"),
        link_error=options.get("link_error"),
        workflow=options,
    )
    serializer = options.get("serializer") or task.serializer or app.conf.task_serializer
    body = encode_envelope(envelope, serializer)
    queue = options.get("queue") or task.queue or app.route(task.name)
    return queue, envelope.priority or 0, body, envelope.id


def _entry_errbacks(sig: Signature[Any]) -> list[dict[str, Any]]:
    """The errbacks of the tasks that start ``sig``: those to run if it never starts."""
    found = list(sig.options.get("link_error", ()))
    inner: list[Signature[Any]] = []
    if isinstance(sig, chain):
        inner = sig._steps()[:1]
    elif isinstance(sig, group):
        inner = sig.tasks
    for member in inner:
        found.extend(d for d in _entry_errbacks(member) if d not in found)
    return found


def _join_message(body: Signature[Any], chord_id: str, placement: Mapping[str, Any]) -> ChordBody:
    """The message the backend queues when the chord is complete: the join task, which
    reads the header's results in order and sends the body with them as its first
    argument (its callback), or fails with ChordError (on the body's errbacks)."""
    app = body.app
    join = app.tasks[CHORD_JOIN]
    options: dict[str, Any] = {
        "link": [body.to_dict()],
        "link_error": _entry_errbacks(body),
        "ignore_result": True,
        **placement,
    }
    # The join goes where the body would, so a worker that serves the body serves it.
    if type(body) is Signature:
        options["queue"] = body.options.get("queue") or body.type.queue or app.route(body.task)
        if body.options.get("priority") is not None:
            options["priority"] = body.options["priority"]
    queue, priority, message, _ = _message(join, [chord_id], {}, options)
    return ChordBody(message, queue, priority)


def _failure_text(chord_id: str, task_id: str, meta: Any) -> str:
    if meta is None:
        return f"chord {chord_id}: header task {task_id} has no result (it expired?)"
    error = meta.exc_type.rsplit(".", 1)[-1] if meta.exc_type else meta.status
    detail = ", ".join(str(a) for a in meta.exc_args or ())
    name = meta.name or "task"
    return f"chord {chord_id}: header task {name}[{task_id}] failed: {error}({detail})"


# --- eager mode --------------------------------------------------------------------------


def _eager(result: AsyncResult[Any]) -> EagerResult[Any]:
    """An eager step's result as an EagerResult (a nested group or chain yields one)."""
    if isinstance(result, EagerResult):
        return result
    from .stores.results import ResultMeta

    try:
        value = result.get()
    except Exception as exc:
        meta = ResultMeta(
            task_id=result.id,
            status=states.FAILURE,
            exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            exc_args=[str(a) for a in exc.args],
        )
    else:
        meta = ResultMeta(task_id=result.id, status=states.SUCCESS, result=value)
    return EagerResult(result.id, meta, result.app)


def _eager_failure(sig: Signature[Any], exc: BaseException) -> EagerResult[Any]:
    from .stores.results import ResultMeta

    task_id = sig.id or new_task_id()
    meta = ResultMeta(
        task_id=task_id,
        status=states.FAILURE,
        exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        exc_args=[str(a) for a in exc.args],
        name=sig.task,
    )
    return EagerResult(task_id, meta, sig.app)


def apply_eager_links(
    result: EagerResult[Any], link: Any, link_error: Any, app: Conveyor | None = None
) -> None:
    """Eager mode: run a finished task's callbacks (or errbacks, with its id) now."""
    meta = result._meta()
    if meta is None:
        return
    if meta.status == states.SUCCESS:
        for data in signature_dicts(link) or ():
            Signature.from_dict(data, app).apply((meta.result,))
    elif meta.status in states.PROPAGATE_STATES:
        for data in signature_dicts(link_error) or ():
            Signature.from_dict(data, app).apply((result.id,))
