"""chain, group, chord and chunks: how signatures combine, and how each is sent."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import ChordError
from ..result import AsyncResult, EagerResult, GroupResult
from ..stores.results import ChordSpec
from ..task import new_task_id
from .eager import as_eager, eager_failure
from .messages import draft_message, failure_text, join_message
from .signature import (
    ACCUMULATE,
    BULK_OPTIONS,
    STARMAP,
    Signature,
    clean_options,
    maybe_signature,
    member_list,
    merge_options,
)

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..message import Envelope

__all__ = ["chain", "chord", "chunks", "collected", "countable", "group", "last_task"]


class _Composite(Signature[Any]):
    """What chain and group share: a list of member signatures, sent by calling."""

    tasks: list[Signature[Any]]

    def member_list(self) -> list[Signature[Any]]:
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
        for item in member_list(tasks):
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
        new.options = merge_options(self.options, clean_options(options))
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
        self.options["task_id"] = result.id  # a chain's id is its last task's (Celery's)
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
                result = as_eager(step.apply())
            elif result.successful():
                result = as_eager(step.apply((result.get(),)))
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
        members = (maybe_signature(t, app) for t in member_list(tasks))
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
        new.options = merge_options(self.options, clean_options(options))
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
        merged = merge_options(self.options, clean_options(options))
        gid: str = merged.pop("task_id", None) or new_task_id()
        merged.pop("group_id", None)
        results: list[AsyncResult[Any]] = []
        batches: dict[tuple[str, int, str], list[Envelope]] = {}
        for member in self.tasks:
            member_options = merge_options(merged, member.options)
            member_options["group_id"] = gid
            if _bulk(member, member_options):
                member_args, member_kwargs = member._merge(args, kwargs)
                queue, envelope, serializer = draft_message(
                    member.type, member_args, member_kwargs, member_options
                )
                batches.setdefault((queue, envelope.priority or 0, serializer), []).append(envelope)
                results.append(AsyncResult(envelope.id, app, member.task))
            else:
                sent = member.clone(args, kwargs)
                sent.options = member_options
                results.append(sent.apply_async())
        for (queue, priority, serializer), envelopes in batches.items():
            app.producer.send_batch(
                envelopes, queue, serializer, priority=priority, kind="workflow"
            )
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
        members = header.tasks if isinstance(header, group) else member_list((header,))
        tasks: list[Signature[Any]] = []
        for item in members:
            sig = maybe_signature(item, app)
            # A group inside the header adds its tasks to the header.
            tasks.extend(sig.tasks if isinstance(sig, group) else (sig,))
        self.tasks = tasks
        self.body: Signature[Any] | None = None if body is None else maybe_signature(body, app)

    def member_list(self) -> list[Signature[Any]]:
        return [*self.tasks, *([self.body] if self.body is not None else [])]

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> chord:
        new = copy.copy(self)
        new.options = merge_options(self.options, clean_options(options))
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
        merged = merge_options(new.options, clean_options(options))
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
        new.tasks = [countable(member) for member in new.tasks]
        result = new.freeze()
        gid: str = new.options["task_id"]
        if not new.tasks:
            new.body.apply_async(([],), **placement)
            return result
        counted = [last_task(member) for member in new.tasks]
        for task in counted:
            task.options["chord"] = {"id": gid}
        members = [task.options["task_id"] for task in counted]
        spec = ChordSpec(
            gid,
            members,
            join_message(new.body, gid, placement, entry_errbacks(new.body)),
            app.broker.carries_results_of(app.backend),
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
                text = failure_text(chord_id, task.id or result.id, result._meta())
                return eager_failure(body, ChordError(text))
        return as_eager(body.apply(([r.get() for r in header],)))

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


# --- helpers ---------------------------------------------------------------------------


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
        and BULK_OPTIONS.issuperset(options)
        and not getattr(member.type, "idempotency_key", None)
    )


def countable(member: Signature[Any]) -> Signature[Any]:
    """A chord header member whose result is one task's: a chain ending in a group, or a
    chord whose body is a group, gets that group collected by one more task (Celery's
    accumulate), so its list is one result of the header, as in Celery."""
    if isinstance(member, chain):
        steps = member._steps()
        if steps and not isinstance(steps[-1], chain | group):
            steps[-1] = countable(steps[-1])
        elif steps:
            steps[-1] = collected(steps[-1])
    elif isinstance(member, chord) and member.body is not None:
        body = member.body
        member.body = collected(body) if isinstance(body, group) else countable(body)
    return member


def collected(sig: Signature[Any]) -> Signature[Any]:
    accumulate: Signature[Any] = Signature(ACCUMULATE, app=sig._app)
    return chord(sig, accumulate, app=sig._app) if isinstance(sig, group) else sig


def last_task(member: Signature[Any]) -> Signature[Any]:
    """The task of a chord header member whose result the chord counts."""
    if isinstance(member, chain):
        steps = member._steps()
        if steps:
            return last_task(steps[-1])
    elif isinstance(member, chord) and member.body is not None:
        return last_task(member.body)  # a nested chord counts when its body ends
    elif type(member) is Signature:
        return member
    raise ValueError(f"a chord header member must be a task, chain or chord: {member!r}")


def entry_errbacks(sig: Signature[Any]) -> list[dict[str, Any]]:
    """The errbacks of the tasks that start ``sig``: those to run if it never starts."""
    found = list(sig.options.get("link_error", ()))
    inner: list[Signature[Any]] = []
    if isinstance(sig, chain):
        inner = sig._steps()[:1]
    elif isinstance(sig, group):
        inner = sig.tasks
    for member in inner:
        found.extend(d for d in entry_errbacks(member) if d not in found)
    return found
