"""The executor: runs one delivered message and says what to store and whether to ack.

It knows nothing of pools or brokers beyond the delivery in its hand: the loop fetches,
the executor decodes, checks, runs the task, and returns an :class:`Outcome`. Messages
that can never run (undecodable, unknown task, arguments that do not fit) are
dead-lettered with the reason; the worker goes on.
"""

from __future__ import annotations

import logging
import time
import traceback as traceback_module
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from .. import states
from ..exceptions import (
    ConfigurationError,
    ContentDisallowed,
    MessageError,
    Retry,
    TaskRevokedError,
)
from ..message import Envelope, decode_envelope, message_head
from ..serializers import accepted
from ..stores.results import ResultMeta, encode_meta, error_meta
from ..stores.transport import Delivery, ResultWrite
from ..task import Context, Task, pop_request, push_request
from .admission import AdmissionGate
from .hooks import WorkerHooks
from .revocations import RevocationCache
from .workflow import Workflow, in_workflow

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..stores.transport import Broker

__all__ = ["DEFERRED", "Executor", "Outcome"]

# Not a task state: the admission gate gave the message back to the broker for later.
DEFERRED = "DEFERRED"

logger = logging.getLogger("conveyor.worker")


@dataclass(slots=True)
class Outcome:
    """What became of one delivery: the state to store (None: store nothing)."""

    result: ResultWrite | None
    status: str


class Executor:
    def __init__(
        self,
        app: Conveyor,
        broker: Broker,
        hooks: WorkerHooks,
        hostname: str,
        store_interim: Callable[[ResultWrite], None],
        revocations: RevocationCache | None = None,
        consumer_id: str = "",
    ) -> None:
        self.app = app
        self.gate = AdmissionGate(app, broker, consumer_id)
        self.workflow = Workflow(app, broker)  # callbacks, errbacks, chords (canvas.py)
        self.revocations = revocations if revocations is not None else RevocationCache()
        self.store_interim = store_interim
        self.broker = broker
        self.hooks = hooks
        self.hostname = hostname
        conf = app.conf
        self.accept = accepted(conf.accept_content)
        self.track_started = bool(conf.task_track_started)
        self.ignore_result = bool(conf.task_ignore_result)
        self.max_deliveries = int(conf.task_max_deliveries)
        self.max_size = int(conf.broker_max_message_size or 0)
        # Off: a task that fails (or times out) is dead-lettered as well as recorded, so
        # it can be replayed (Celery rejects it, which RabbitMQ dead-letters).
        self.acks_on_failure = bool(conf.task_acks_on_failure_or_timeout)
        self._delivery: Delivery | None = None

    # the one entry point ------------------------------------------------------------
    def prepare(self, delivery: Delivery) -> tuple[Envelope, Context] | Outcome:
        """Decode and check a message; an Outcome means it will not run.

        Nothing in a message may crash the loop (promise 5): whatever goes wrong while
        it is decoded and checked dead-letters it with the reason, and REJECTED is
        stored under its id when one can be read from it (message.message_head)."""
        if delivery.deliveries > self.max_deliveries:
            # Its worker died every time it had it: a poison message. Checked before
            # decoding, since decoding may be what kills the child.
            return self._reject(
                delivery,
                _head_request(delivery.body),
                f"delivered {delivery.deliveries} times and its worker died each time "
                f"(task_max_deliveries={self.max_deliveries})",
            )
        if self.max_size and len(delivery.body) > self.max_size:
            return self._reject(
                delivery,
                _head_request(delivery.body),
                f"message of {len(delivery.body):,} bytes is over broker_max_message_size "
                f"({self.max_size:,})",
            )
        try:
            envelope = decode_envelope(delivery.body, self.accept)
            request = Context.from_envelope(
                envelope,
                hostname=self.hostname,
                delivery_info={
                    "queue": delivery.queue,
                    "routing_key": delivery.queue,
                    "priority": delivery.priority,
                    "redelivered": delivery.redelivered,
                    "deliveries": delivery.deliveries,
                },
            )
        except Exception as exc:
            reason = str(exc) if isinstance(exc, (MessageError, ContentDisallowed)) else (
                f"could not prepare the message: {type(exc).__name__}: {exc}"
            )
            return self._reject(delivery, _head_request(delivery.body), reason)
        if envelope.task not in self.app.tasks:
            return self._reject(delivery, request, f"unknown task name {envelope.task!r}")
        if self.gate.watches(envelope.task):
            # Rate and concurrency limits: a task that may not start now goes back to
            # the broker for later instead of holding this slot (worker/admission.py).
            try:
                if not self.gate.admit(self.app.tasks[envelope.task], envelope, delivery):
                    return Outcome(None, DEFERRED)
            except ConfigurationError as exc:
                return self._reject(delivery, request, str(exc))
        self.hooks.task_received(request)
        return envelope, request

    def execute(self, delivery: Delivery, envelope: Envelope, request: Context) -> Outcome:
        """Run the task and build the state to store."""
        self._delivery = delivery
        task = self.app.tasks[envelope.task]
        store = not (envelope.ignore_result or _flag(task.ignore_result, self.ignore_result))
        if envelope.id in self.revocations:
            return self._revoked(request, "revoked", store)
        if envelope.expires is not None and time.time() > envelope.expires:
            return self._revoked(request, "expired", store)
        self.hooks.task_started(request)
        if store and _flag(task.track_started, self.track_started):
            self._store_interim(request, states.STARTED)
        push_request(request)
        started = time.perf_counter()
        try:
            value = task.run(*envelope.args, **envelope.kwargs)
        except Retry as retry:
            return self._retried(request, retry, store)
        except TaskRevokedError:
            return self._revoked(request, "terminated", store)
        except Exception as exc:
            if isinstance(exc, TypeError) and _bad_call(exc):
                # Raised by the call itself, not inside the task: the arguments do not
                # fit the signature. No retry can fix that, so it is dead-lettered.
                return self._reject(delivery, request, f"arguments do not fit the task: {exc}")
            try:
                task.autoretry(exc, request)
            except Retry as retry:
                return self._retried(request, retry, store)
            except Exception as final:
                return self._failed(request, final, time.perf_counter() - started, store)
            return self._failed(request, exc, time.perf_counter() - started, store)
        finally:
            pop_request()
            self.gate.finished()
        runtime = time.perf_counter() - started
        self.hooks.task_succeeded(request, value, runtime)
        return self._succeeded(envelope, request, value, store)

    def _succeeded(self, envelope: Envelope, request: Context, value: Any, store: bool) -> Outcome:
        if in_workflow(request):
            self.workflow.succeeded(request, value, store)  # stores it, then sends
            return Outcome(None, states.SUCCESS)
        if not store:
            return Outcome(None, states.SUCCESS)
        meta = ResultMeta(
            task_id=envelope.id,
            status=states.SUCCESS,
            result=value,
            date_done=time.time(),
            name=envelope.task,
            retries=envelope.retries,
            parent_id=envelope.parent_id,
            children=request.children,
        )
        return Outcome(ResultWrite(envelope.id, encode_meta(meta), True), states.SUCCESS)

    def received(self, deliveries: list[Delivery]) -> list[ResultWrite]:
        """RECEIVED records for leased messages (when tracking is on)."""
        writes = []
        for delivery in deliveries:
            try:
                head = _peek(delivery.body)
            except (Exception, RecursionError):
                continue  # prepare() dead-letters it with the full reason
            if head.ignore_result:
                continue
            meta = ResultMeta(
                task_id=head.id, status=states.RECEIVED, name=head.task, worker=self.hostname
            )
            writes.append(ResultWrite(head.id, encode_meta(meta), False))
        return writes

    # outcomes -------------------------------------------------------------------------
    def _failed(self, request: Context, exc: Exception, runtime: float, store: bool) -> Outcome:
        tb = traceback_module.format_exc()
        self.hooks.task_failed(request, exc, tb, runtime)
        if not self.acks_on_failure and self._delivery is not None:
            self.broker.dead_letter(self._delivery.body, self._delivery.queue, failure_reason(exc))
        if in_workflow(request):
            write = self._error_write(request, states.FAILURE, exc, tb)
            self.workflow.failed(request, write, exc, tb, store)
            return Outcome(None, states.FAILURE)
        if not store:
            return Outcome(None, states.FAILURE)
        return Outcome(self._error_write(request, states.FAILURE, exc, tb), states.FAILURE)

    def _retried(self, request: Context, retry: Retry, store: bool) -> Outcome:
        tb = traceback_module.format_exc() if retry.exc is not None else None
        self.hooks.task_retried(request, retry.reason, retry.exc, tb)
        if not store:
            return Outcome(None, states.RETRY)
        cause: BaseException = retry.exc if retry.exc is not None else retry
        write = self._error_write(request, states.RETRY, cause, tb)
        return Outcome(ResultWrite(write.task_id, write.payload, False), states.RETRY)

    def _revoked(self, request: Context, reason: str, store: bool) -> Outcome:
        logger.info("Task %s[%s] %s: not run", request.task, request.id, reason)
        self.hooks.task_revoked(
            request, terminated=reason == "terminated", expired=reason == "expired"
        )
        exc = TaskRevokedError(f"task {request.id} {_REVOKED_TEXT.get(reason, reason)}")
        if in_workflow(request):
            write = self._error_write(request, states.REVOKED, exc, None)
            self.workflow.failed(request, write, exc, None, store)
            return Outcome(None, states.REVOKED)
        if not store:
            return Outcome(None, states.REVOKED)
        return Outcome(self._error_write(request, states.REVOKED, exc, None), states.REVOKED)

    def _reject(self, delivery: Delivery, request: Context | None, reason: str) -> Outcome:
        self.broker.dead_letter(delivery.body, delivery.queue, reason)
        self.hooks.task_rejected(request, reason)
        if request is None or request.id is None:
            return Outcome(None, states.REJECTED)
        exc = MessageError(reason)
        write = self._error_write(request, states.REJECTED, exc, None)
        if in_workflow(request):
            self.workflow.failed(request, write, exc, None, True)
            return Outcome(None, states.REJECTED)
        return Outcome(write, states.REJECTED)

    def _error_write(
        self, request: Context, status: str, exc: BaseException, tb: str | None
    ) -> ResultWrite:
        assert request.id is not None
        meta = error_meta(
            request.id,
            status,
            exc,
            traceback=tb,
            name=request.task,
            retries=request.retries,
            parent_id=request.parent_id,
        )
        return ResultWrite(request.id, encode_meta(meta), True)

    def _store_interim(self, request: Context, status: str) -> None:
        assert request.id is not None
        meta = ResultMeta(
            task_id=request.id, status=status, name=request.task, worker=self.hostname
        )
        self.store_interim(ResultWrite(request.id, encode_meta(meta), False))


def _head_request(body: bytes) -> Context | None:
    """The request of a message that will not run, as far as its id and name can be
    read without trusting it."""
    head = message_head(body)
    return None if head is None else Context(id=head.id, task=head.task)


def _bad_call(exc: TypeError) -> bool:
    """True when the TypeError was raised by calling the task function, not inside it:
    the innermost frame is the call site (``execute`` itself, or ``Task.run``)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code in (Executor.execute.__code__, Task.run.__code__)


class _Head(msgspec.Struct):
    """The few envelope fields needed before a message runs (decoded without the rest)."""

    id: str
    task: str
    ignore_result: bool = False


_peek = msgspec.json.Decoder(_Head).decode


def failure_reason(exc: BaseException) -> str:
    """The dead-letter reason of a failed task, when task_acks_on_failure_or_timeout is
    off."""
    return f"failed with {type(exc).__name__}: {exc} (task_acks_on_failure_or_timeout is off)"


_REVOKED_TEXT = {
    "expired": "expired before it started",
    "revoked": "was revoked",
    "terminated": "was terminated while running",
}


def _flag(task_value: bool | None, default: bool) -> bool:
    return default if task_value is None else bool(task_value)
