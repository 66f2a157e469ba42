"""Messages a workflow builds through the producer without sending them at once: a
group's members (sent in bulk), a chord's join task (built when the chord starts, queued
by the backend), and the text of the ChordError a failed header task gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..stores.results import ChordBody
from .signature import CHORD_JOIN, Signature

if TYPE_CHECKING:
    from ..message import Envelope
    from ..task import Task

__all__ = ["draft_message", "failure_text", "join_message"]


def draft_message(
    task: Task[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[str, Envelope, str]:
    """What ``task.apply_async(args, kwargs, **options)`` would send, not sent:
    (queue, envelope, serializer), from the producer."""
    producer = task.app.producer
    envelope = producer.envelope(
        task,
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
    queue = producer.queue_for(task, options.get("queue"))
    return queue, envelope, producer.serializer_for(task, options.get("serializer"))


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
        options["queue"] = app.producer.queue_for(body.type, body.options.get("queue"))
        if body.options.get("priority") is not None:
            options["priority"] = body.options["priority"]
    queue, envelope, serializer = draft_message(join, [chord_id], {}, options)
    # Hooked and announced now; the store (or the worker) queues it at the end.
    message = app.producer.prepare(envelope, queue, serializer)
    return ChordBody(message, queue, envelope.priority or 0)


def failure_text(chord_id: str, task_id: str, meta: Any) -> str:
    if meta is None:
        return f"chord {chord_id}: header task {task_id} has no result (it expired?)"
    error = meta.exc_type.rsplit(".", 1)[-1] if meta.exc_type else meta.status
    detail = ", ".join(str(a) for a in meta.exc_args or ())
    name = meta.name or "task"
    return f"chord {chord_id}: header task {name}[{task_id}] failed: {error}({detail})"
