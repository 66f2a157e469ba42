"""One task call as data (:class:`Signature`), and the helpers every workflow uses to
read and merge sending options (callbacks kept as lists of dicts, datetimes as JSON)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..result import AsyncResult
from ..task import new_task_id

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..task import Task
    from .workflows import chain

__all__ = [
    "ACCUMULATE",
    "BUILTIN_TASKS",
    "BULK_OPTIONS",
    "CHORD_JOIN",
    "MAP",
    "STARMAP",
    "Signature",
    "clean_options",
    "maybe_signature",
    "member_list",
    "merge_options",
    "signature",
    "signature_dicts",
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
BULK_OPTIONS = frozenset(
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
        self.options: dict[str, Any] = clean_options({**(options or {}), **ex})
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
        from ..app import current_app

        return current_app()

    def _own_app(self) -> Conveyor | None:
        if self._app is not None:
            return self._app
        if self._type is not None:
            return self._type.app
        for member in self.member_list():
            found = member._own_app()
            if found is not None:
                return found
        return None

    def member_list(self) -> list[Signature[Any]]:
        return []

    @property
    def type(self) -> Task[..., R]:
        """The task: the app's registered one, or a stand-in that can only be sent."""
        if self._type is None:
            app = self.app
            found = app.tasks.get(self.task)
            if found is None:
                from ..app import missing_task_body
                from ..task import Task

                found = Task(missing_task_body(self.task), app, self.task)
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
        new.options = merge_options(self.options, clean_options(options))
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
        self.options = merge_options(self.options, clean_options(options))
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
        merged = merge_options(self.options, clean_options(options))
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
        merged = merge_options(self.options, clean_options(options))
        from .eager import apply_eager_links

        result = self.type.apply(merged_args, merged_kwargs, task_id=merged.get("task_id"))
        apply_eager_links(result, merged.get("link"), merged.get("link_error"), self.app)
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task body here, with the partial arguments applied."""
        merged_args, merged_kwargs = self._merge(args, kwargs)
        return self.type.run(*merged_args, **merged_kwargs)

    def __or__(self, other: Signature[Any]) -> chain:
        from .workflows import chain

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
            "options": json_options(self.options),
            "subtask_type": self.subtask_type,
            "immutable": self.immutable,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any], app: Conveyor | None = None) -> Signature[Any]:
        """The signature (or chain, group, chord, chunks) that ``data`` describes."""
        from .workflows import chain, chord, chunks, group

        kind = data.get("subtask_type")
        options = read_options(data.get("options") or {})
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


def member_list(items: tuple[Any, ...]) -> list[Any]:
    """``f(a, b)`` or ``f([a, b])`` or ``f(generator)``: the members, as a list."""
    if len(items) == 1 and not isinstance(items[0], (Signature, Mapping)):
        return list(items[0])
    return list(items)


def clean_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in _CALLBACKS:
        if key in out:
            dicts = signature_dicts(out[key])
            if dicts:
                out[key] = dicts
            else:
                del out[key]
    return out


def merge_options(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
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


def json_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in _DATETIME_OPTIONS:
        value = out.get(key)
        if isinstance(value, datetime):
            out[key] = {"datetime": value.isoformat()}
    return out


def read_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in _DATETIME_OPTIONS:
        value = out.get(key)
        if isinstance(value, Mapping) and "datetime" in value:
            out[key] = datetime.fromisoformat(value["datetime"])
    return out
