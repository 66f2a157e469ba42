"""The messages a chord sends from the backend: its join task, built (not sent) when
the chord starts, and the text of the ChordError a failed header task gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..message import encode_envelope
from ..stores.results import ChordBody
from .signature import CHORD_JOIN, Signature

if TYPE_CHECKING:
    from ..task import Task

__all__ = ["draft_message", "failure_text", "join_message"]


def draft_message(
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
    body = encode_envelope(envelope, serializer, app.conf.raw["broker_max_message_size"])
    queue = options.get("queue") or task.queue or app.route(task.name)
    return queue, envelope.priority or 0, body, envelope.id


def join_message(
    body: Signature[Any],
    chord_id: str,
    placement: Mapping[str, Any],
    errbacks: list[dict[str, Any]],
) -> ChordBody:
    """The message the backend queues when the chord is complete: the join task, which
    reads the header's results in order and sends the body with them as its first
    argument (its callback), or fails with ChordError (on the body's errbacks)."""
    app = body.app
    join = app.tasks[CHORD_JOIN]
    options: dict[str, Any] = {
        "link": [body.to_dict()],
        "link_error": errbacks,
        "ignore_result": True,
        **placement,
    }
    # The join goes where the body would, so a worker that serves the body serves it.
    if type(body) is Signature:
        options["queue"] = body.options.get("queue") or body.type.queue or app.route(body.task)
        if body.options.get("priority") is not None:
            options["priority"] = body.options["priority"]
    queue, priority, message, _ = draft_message(join, [chord_id], {}, options)
    return ChordBody(message, queue, priority)


def failure_text(chord_id: str, task_id: str, meta: Any) -> str:
    if meta is None:
        return f"chord {chord_id}: header task {task_id} has no result (it expired?)"
    error = meta.exc_type.rsplit(".", 1)[-1] if meta.exc_type else meta.status
    detail = ", ".join(str(a) for a in meta.exc_args or ())
    name = meta.name or "task"
    return f"chord {chord_id}: header task {name}[{task_id}] failed: {error}({detail})"
