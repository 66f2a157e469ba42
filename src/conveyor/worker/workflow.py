"""What the executor does for a task that is a step of a workflow (conveyor.canvas).

A message may carry callbacks (the rest of its chain, linked tasks), errbacks, and the
chord it is a header task of. A plain task carries none, and the executor calls in here
only when one is present, so the hot path of plain tasks is untouched.

The task's own result is stored here, synchronously, before anything is sent (the
loop then only acks): a callback that runs at once finds its parent's result (and the
parent its children's ids, chosen in advance), and a worker killed before the ack runs
the task again and sends the callbacks again, rather than never.

- Success: the callbacks are sent with the result prepended to their arguments (unless
  immutable).
- Final failure (FAILURE, REVOKED, REJECTED): every task the callbacks would have sent
  gets the same failure, so ``get()`` on a chain's last result raises it instead of
  waiting forever; then the errbacks run, once.
- A chord header task: its final result is stored and counted toward the chord in one
  atomic backend step. The step that counts the last header task queues the body: in
  that same step when the broker shares the backend's store, else the body comes back
  here and is sent now.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import time
import traceback as traceback_module
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .. import states
from ..canvas import CHORD_JOIN, Signature
from ..stores.results import ResultMeta, decode_meta, encode_meta
from ..stores.transport import ResultWrite

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..stores.transport import Transport
    from ..task import Context, Task

__all__ = ["Workflow", "downstream", "first_ids", "in_workflow", "settle_failure"]

logger = logging.getLogger("conveyor.worker")


def in_workflow(request: Context) -> bool:
    """Does this call need :class:`Workflow` (callbacks, errbacks or a chord)?"""
    return (
        request.callbacks is not None or request.errbacks is not None or (request.chord is not None)
    )


def settle_failure(
    app: Conveyor, broker: Transport, body: bytes, write: ResultWrite, exc: BaseException
) -> bool:
    """For a failure recorded outside the executor (a hard time limit, a terminate):
    when the message was a workflow step, store ``write`` and do what the executor would
    have (fail what follows, run the errbacks, count the chord) and return True; False
    means it was not, and the caller stores ``write`` itself."""
    from ..message import decode_envelope
    from ..serializers import accepted
    from ..task import Context

    try:
        envelope = decode_envelope(body, accepted(app.conf.accept_content))
    except Exception:
        return False
    request = Context.from_envelope(envelope)
    if not in_workflow(request):
        return False
    Workflow(app, broker).failed(request, write, exc, None, True)
    return True


class Workflow:
    def __init__(self, app: Conveyor, broker: Transport) -> None:
        self.app = app
        self.broker = broker

    # outcomes -------------------------------------------------------------------------
    def succeeded(self, request: Context, value: Any, store: bool) -> None:
        """Store the result, then send the callbacks."""
        assert request.id is not None
        children = list(request.children or ())
        callbacks = [self._frozen(data) for data in request.callbacks or ()]
        for data in callbacks:
            children.extend(first_ids(data))
        meta = ResultMeta(
            task_id=request.id,
            status=states.SUCCESS,
            result=value,
            date_done=time.time(),
            name=request.task,
            retries=request.retries,
            parent_id=request.parent_id,
            children=children or None,
        )
        self._store(request, ResultWrite(request.id, encode_meta(meta), True), store)
        for data in callbacks:
            self._send_callback(request, data, value)

    def _frozen(self, data: dict[str, Any]) -> dict[str, Any]:
        """A callback with its ids chosen, so they are stored as this task's children
        before it is sent (``link=add.s()`` comes unfrozen; a chain's steps do not)."""
        if first_ids(data):
            return data
        sig = Signature.from_dict(data, self.app)
        sig.freeze()
        return sig.to_dict()

    def failed(
        self,
        request: Context,
        write: ResultWrite,
        exc: BaseException,
        tb: str | None,
        store: bool,
    ) -> None:
        """The task ended for good without a result (``write`` is its error record):
        store it, fail what would have followed, run the errbacks."""
        self._store(request, write, store)
        if request.callbacks:
            self.fail_downstream(request.callbacks, write.payload)
        if request.errbacks:
            self._run_errbacks(request, exc, tb)

    def _store(self, request: Context, write: ResultWrite, store: bool) -> None:
        if request.chord is not None:
            self.count(request.chord, write)  # stored whatever ignore_result says
        elif store:
            self.app.backend.store(write.task_id, write.payload, True)

    # the steps ------------------------------------------------------------------------
    def count(self, chord: dict[str, Any], write: ResultWrite) -> None:
        """Store a chord header task's final state and count it (one atomic step);
        send the body if this completed the chord and the backend did not queue it."""
        body = self.app.backend.chord_part(chord["id"], write)
        if body is not None:
            # Built and announced by the producer when the chord was sent.
            self.app.producer.publish_prepared(body.queue, body.body, body.priority)

    def fail_downstream(self, callbacks: Iterable[dict[str, Any]], payload: bytes) -> None:
        """Give every task the callbacks would send the failure in ``payload``."""
        meta = decode_meta(payload)
        for data in callbacks:
            for task_id, name, chord in downstream(data):
                record = msgspec.structs.replace(meta, task_id=task_id, name=name or None)
                write = ResultWrite(task_id, encode_meta(record), True)
                if chord is not None:
                    self.count(chord, write)  # a started chord must still complete
                else:
                    self.app.backend.store(task_id, write.payload, True)

    def _send_callback(self, request: Context, data: dict[str, Any], value: Any) -> None:
        sig = Signature.from_dict(data, self.app)
        try:
            sig.apply_async((value,), parent_id=request.id, root_id=request.root_id or request.id)
        except (TypeError, ValueError) as exc:
            # The result cannot travel as an argument: what would follow fails with that.
            logger.error("Task %s[%s]: cannot send callback %r: %s", request.task,
                         request.id, sig, exc)  # fmt: skip
            meta = ResultMeta(
                task_id=request.id or "",
                status=states.FAILURE,
                exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                exc_args=[str(exc)],
                traceback=traceback_module.format_exc(),
                date_done=time.time(),
                parent_id=request.id,
            )
            self.fail_downstream([data], encode_meta(meta))

    def _run_errbacks(self, request: Context, exc: BaseException, tb: str | None) -> None:
        """Celery's two kinds: an errback whose task takes ``(request, exc, traceback)``
        is called here; any other is sent with the failed task's id. For a chord, that
        is the body's id (it holds the ChordError), not the join task's."""
        subject = request.id
        if request.task == CHORD_JOIN and request.callbacks:
            subject = next(downstream(request.callbacks[0]), (subject,))[0]
            # Celery calls a chord body's errbacks with a request made for the body.
            body = request.callbacks[0]
            request = dataclasses.replace(
                request, id=subject, task=str(body.get("task") or request.task), callbacks=None
            )
        for data in request.errbacks or ():
            sig = Signature.from_dict(data, self.app)
            try:
                task = self.app.tasks.get(sig.task)
                if task is not None and _wants_request(task, sig):
                    sig(request, exc, tb)
                else:
                    sig.apply_async(
                        (subject,), parent_id=request.id, root_id=request.root_id or request.id
                    )
            except Exception:
                logger.exception("errback %r of task %s[%s] failed", sig, request.task, request.id)


def _wants_request(task: Task[..., Any], sig: Signature[Any]) -> bool:
    """Celery's test for a ``(request, exc, traceback)`` errback: it takes more than one
    positional argument (not counting those its signature already gives)."""
    try:
        params = list(inspect.signature(task.__wrapped__).parameters.values())
    except (TypeError, ValueError):
        return False
    if task.bind and params:
        params = params[1:]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    open_ = [
        name for name in positional[: len(positional) - len(sig.args)] if name not in sig.kwargs
    ]
    return len(open_) > 1


def downstream(data: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any] | None]]:
    """Every task a callback would send, as (frozen id, task name, chord it counts
    toward): the steps that never run when the task that carries it fails."""
    kind = data.get("subtask_type")
    kwargs = data.get("kwargs") or {}
    options = data.get("options") or {}
    if kind in ("chain", "group"):
        for item in kwargs.get("tasks", ()):
            yield from downstream(item)
    elif kind == "chord":
        for item in itertools.chain(kwargs.get("header", ()), [kwargs.get("body")]):
            if item:
                yield from downstream(item)
    elif kind is None and options.get("task_id"):
        yield options["task_id"], str(data.get("task", "")), options.get("chord")
    for link in options.get("link") or ():
        yield from downstream(link)


def first_ids(data: Mapping[str, Any]) -> list[str]:
    """The ids of the messages a callback sends at once (the sender's children)."""
    kind = data.get("subtask_type")
    kwargs = data.get("kwargs") or {}
    if kind == "chain":
        tasks = kwargs.get("tasks") or ()
        return first_ids(tasks[0]) if tasks else []
    if kind in ("group", "chord"):
        members = kwargs.get("tasks" if kind == "group" else "header") or ()
        return [i for item in members for i in first_ids(item)]
    task_id = (data.get("options") or {}).get("task_id")
    return [task_id] if task_id else []
