"""Recording a task the worker ended from outside the executor.

The prefork supervisor (hard time limit, terminate, a lost child) and the threads/solo
keeper (a task that outlived its hard limit) end tasks the executor never finishes.
Both record them the same way, here: the outcome is stored (a workflow step also fails
what follows and counts toward its chord), a failure is dead-lettered when
``task_acks_on_failure_or_timeout`` is off, and the lease ends so the message is not
delivered again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import states
from ..stores.results import encode_meta, error_meta
from ..stores.transport import ResultWrite, leases_of
from .executor import failure_reason
from .workflow import settle_failure

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..task import Context
    from .hooks import WorkerHooks

__all__ = ["record_ended"]


def record_ended(
    app: Conveyor,
    *,
    consumer_id: str,
    tag: str,
    task_id: str,
    status: str,
    exc: BaseException,
    worker: str,
    body: bytes | None,
    queue: str | None = None,
    hooks: WorkerHooks | None = None,
) -> None:
    """Record task ``task_id`` (leased by ``consumer_id`` as ``tag``) as ended with
    ``exc``; ``body`` is its message when still at hand. ``hooks`` hears of it as the
    executor's would have (TaskFailed, or TaskRevoked for a terminated task)."""
    write = ResultWrite(task_id, encode_meta(error_meta(task_id, status, exc, worker=worker)), True)
    if body is None or not settle_failure(app, app.broker, body, write, exc):
        app.backend.store(task_id, write.payload, True)
    if (
        body is not None
        and status == states.FAILURE
        and not app.conf.task_acks_on_failure_or_timeout
    ):
        app.coordinator.dead_letter(body, queue or _queue_of(app, body), failure_reason(exc))
    leases = leases_of(app.broker)
    if leases is not None:
        leases.discard(consumer_id, [tag])
    # Without leases (AMQP) the message went back with the dead child's connection; the
    # final state stored above keeps it from running again (Executor._ended_before).
    if hooks is not None:
        hooks.task_ended(_request_of(app, body, task_id), status, exc)


def _request_of(app: Conveyor, body: bytes | None, task_id: str) -> Context:
    """The request of an ended task, from its message when it can be read."""
    from ..message import decode_envelope
    from ..serializers import accepted
    from ..task import Context

    if body is not None:
        try:
            return Context.from_envelope(decode_envelope(body, accepted(app.conf.accept_content)))
        except Exception:  # it was running, so it decoded once; be safe all the same
            pass
    return Context(id=task_id, called_directly=False)


def _queue_of(app: Conveyor, body: bytes) -> str:
    """The queue a message was routed to (by its task name), for a dead letter."""
    from ..message import decode_envelope
    from ..serializers import accepted

    try:
        return app.route(decode_envelope(body, accepted(app.conf.accept_content)).task)
    except Exception:
        return str(app.conf.task_default_queue)
