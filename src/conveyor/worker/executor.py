"""The executor: the work of each step of an attempt (worker/attempt.py).

It knows nothing of pools, and of the broker only the consumer that leased the delivery:
the loop fetches, an attempt asks the executor to decode, check and admit its message,
to begin the task and judge how it ended (an :class:`Outcome`: what to store), and to
settle it (ack and result together). Messages that can never run (undecodable, unknown
task, arguments that do not fit) are dead-lettered with the reason; the worker goes on.
"""

from __future__ import annotations

import logging
import time
import traceback as traceback_module
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .. import states
from ..exceptions import (
    ConfigurationError,
    ContentDisallowed,
    Ignore,
    MessageError,
    PoolCannotRun,
    Retry,
    TaskRevokedError,
)
from ..message import Envelope, decode_envelope, message_head
from ..result import exception_from_meta
from ..serializers import accepted
from ..stores.results import ResultMeta, decode_meta, encode_meta, error_meta
from ..stores.transport import Delivery, ResultWrite, TransportConsumer, leases_of
from ..task import Context, Task, push_request
from .admission import AdmissionGate
from .attempt import Attempt
from .hooks import WorkerHooks
from .revocations import RevocationCache
from .workflow import Workflow, in_workflow

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["DEFERRED", "AttemptWatcher", "Executor", "Outcome"]

# Not a task state: the admission gate gave the message back to the broker for later.
DEFERRED = "DEFERRED"

logger = logging.getLogger("conveyor.worker")


@dataclass(slots=True)
class Outcome:
    """What became of one delivery: the state to store (None: store nothing)."""

    result: ResultWrite | None
    status: str


class AttemptWatcher(Protocol):
    """Told when an attempt's task body starts and ends (a pool's SIGALRM, a prefork
    child's shared-memory slot)."""

    def started(self, attempt: Attempt) -> None: ...

    def finished(self, attempt: Attempt) -> None: ...


class Executor:
    """The work of the attempts one consumer feeds, and what they share: the app, the
    consumer (acks and write-behind results), the admission gate, the hooks."""

    def __init__(
        self,
        app: Conveyor,
        consumer: TransportConsumer,
        consumer_id: str,
        hostname: str,
        hooks: WorkerHooks,
        revocations: RevocationCache | None = None,
        watchers: Sequence[AttemptWatcher] = (),
    ) -> None:
        self.app = app
        broker = app.broker
        self.consumer = consumer
        self._leased = leases_of(app.broker) is not None
        self.consumer_id = consumer_id
        self.carries_results = consumer.carries_results
        self.gate = AdmissionGate(app, broker, consumer_id)
        self.workflow = Workflow(app, broker)  # callbacks, errbacks, chords (canvas/)
        self.revocations = revocations if revocations is not None else RevocationCache()
        self.broker = broker
        self.hooks = hooks
        self.hostname = hostname
        self.watchers = tuple(watchers)
        conf = app.conf
        self.accept = accepted(conf.accept_content)
        self.track_started = bool(conf.task_track_started)
        self.ignore_result = bool(conf.task_ignore_result)
        self.acks_late = bool(conf.task_acks_late)
        self.max_deliveries = int(conf.task_max_deliveries)
        self.max_size = int(conf.broker_max_message_size or 0)
        self.soft_limit = conf.task_soft_time_limit
        self.hard_limit = conf.task_time_limit
        # Off: a task that fails (or times out) is dead-lettered as well as recorded, so
        # it can be replayed (Celery rejects it, which RabbitMQ dead-letters).
        self.acks_on_failure = bool(conf.task_acks_on_failure_or_timeout)

    # prepare ----------------------------------------------------------------------------
    def prepare(self, attempt: Attempt) -> bool:
        """Decode and check a message, and admit it; False: it will not run.

        Nothing in a message may crash the loop (promise 5): whatever goes wrong while
        it is decoded and checked dead-letters it with the reason, and REJECTED is
        stored under its id when one can be read from it (message.message_head)."""
        delivery = attempt.delivery
        if delivery.deliveries > self.max_deliveries or (
            self.max_size and len(delivery.body) > self.max_size
        ):
            attempt.outcome = self._refuse_unread(delivery)
            return False
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
            attempt.outcome = self._reject(delivery, _head_request(delivery.body), reason)
            return False
        attempt.request = request
        ended = self._ended_before(delivery, envelope.id)
        if ended is not None:
            self._settle_ended(request, ended)
            attempt.outcome = Outcome(None, ended[0].status)  # acked, not run again
            return False
        task = self.app.tasks.get(envelope.task)
        if task is None or self.gate.watches(envelope.task):
            outcome = self._check(attempt, envelope, request)
            if outcome is not None:
                attempt.outcome = outcome
                return False
            task = self.app.tasks[envelope.task]
        self.hooks.task_received(request)
        attempt.envelope = envelope
        attempt.task = task
        attempt.acks_late = self.acks_late if task.acks_late is None else task.acks_late
        if not attempt.acks_late:
            # At most once: the message is gone before the task starts.
            self.consumer.ack(delivery)
        return True

    def _ended_before(self, delivery: Delivery, task_id: str) -> tuple[ResultMeta, bytes] | None:
        """The final state (and its stored record) of a redelivered message's task, when
        the transport has no leases (AMQP) and one is stored: the prefork supervisor
        ended it (hard time limit, terminate, lost child) but cannot discard what the
        dead child's connection gave back, or a worker died between storing the outcome
        and the ack. Such a message is acked without running again."""
        if not delivery.redelivered or self._leased:
            return None
        raw = self.app.backend.get(task_id)
        if raw is None:
            return None
        meta = decode_meta(raw)
        return (meta, raw) if meta.status in states.READY_STATES else None

    def _settle_ended(self, request: Context, ended: tuple[ResultMeta, bytes]) -> None:
        """Do for a workflow step that failed for good what the supervisor that ended it
        could not: without leases it never had the message, only the task id (issue
        15). Its chord counts it, what follows fails, its errbacks run. Counting a chord
        and failing what follows store the same records again, so a second settling
        (the executor failed it normally and its worker died before the ack) changes
        nothing; errbacks are at least once, like every task."""
        meta, raw = ended
        if meta.status not in (states.FAILURE, states.REVOKED) or not in_workflow(request):
            return
        assert request.id is not None
        write = ResultWrite(request.id, raw, True)
        self.workflow.failed(request, write, exception_from_meta(meta), meta.traceback, False)

    def _refuse_unread(self, delivery: Delivery) -> Outcome:
        """Refuse a message before decoding it: a poison one, or one too large."""
        if delivery.deliveries > self.max_deliveries:
            # Its worker died every time it had it: a poison message. Checked before
            # decoding, since decoding may be what kills the child.
            return self._reject(
                delivery,
                _head_request(delivery.body),
                f"delivered {delivery.deliveries} times and its worker died each time "
                f"(task_max_deliveries={self.max_deliveries})",
            )
        return self._reject(
            delivery,
            _head_request(delivery.body),
            f"message of {len(delivery.body):,} bytes is over broker_max_message_size "
            f"({self.max_size:,})",
        )

    def _check(self, attempt: Attempt, envelope: Envelope, request: Context) -> Outcome | None:
        """Why the message will not run (dead-lettered or deferred), or None."""
        delivery = attempt.delivery
        if envelope.task not in self.app.tasks:
            return self._reject(delivery, request, f"unknown task name {envelope.task!r}")
        if self.gate.watches(envelope.task):
            # Rate and concurrency limits: a task that may not start now goes back to
            # the broker for later instead of holding this slot (worker/admission.py).
            try:
                admission = self.gate.admit(self.app.tasks[envelope.task], envelope, delivery)
            except ConfigurationError as exc:
                return self._reject(delivery, request, str(exc))
            if not admission:
                return Outcome(None, DEFERRED)
            attempt.admission = admission
        return None

    # execute ----------------------------------------------------------------------------
    def begin(self, attempt: Attempt) -> bool:
        """Check revocation and expiry, record STARTED, make the request current."""
        envelope, request, task = attempt.envelope, attempt.request, attempt.task
        assert envelope is not None and request is not None and task is not None
        store = attempt.stores = not (
            envelope.ignore_result or _flag(task.ignore_result, self.ignore_result)
        )
        if envelope.id in self.revocations:
            attempt.outcome = self._revoked(request, "revoked", store)
            self.release(attempt)
            return False
        if envelope.expires is not None and time.time() > envelope.expires:
            attempt.outcome = self._revoked(request, "expired", store)
            self.release(attempt)
            return False
        self.hooks.task_started(request)
        if store and _flag(task.track_started, self.track_started):
            self._store_interim(request, states.STARTED)
        push_request(request)
        return True

    def succeeded(self, attempt: Attempt, value: Any, runtime: float) -> None:
        """The body returned ``value``: build the state to store."""
        envelope, request = attempt.envelope, attempt.request
        assert envelope is not None and request is not None
        self.hooks.task_succeeded(request, value, runtime)
        attempt.outcome = self._succeeded(envelope, request, value, attempt.stores)

    def raised(self, attempt: Attempt, exc: Exception, runtime: float) -> None:
        """The body raised ``exc`` (called while handling it): retry, revoked, failed,
        or, when the call itself did not fit, dead-lettered."""
        request = attempt.request
        assert request is not None and attempt.task is not None
        store = attempt.stores
        if isinstance(exc, Retry):
            attempt.outcome = self._retried(request, exc, store)
        elif isinstance(exc, TaskRevokedError):
            attempt.outcome = self._revoked(request, "terminated", store)
        elif isinstance(exc, Ignore):
            # Replaced (self.replace): the replacement stores the result under this id,
            # counts toward its chord and sends its callbacks; nothing to record here.
            attempt.outcome = Outcome(None, states.IGNORED)
        elif isinstance(exc, PoolCannotRun):
            # This worker cannot run it, another can: dead-lettered, to be replayed.
            attempt.outcome = self._reject(attempt.delivery, request, str(exc))
        elif isinstance(exc, TypeError) and _bad_call(exc):
            # Raised by the call itself, not inside the task: the arguments do not
            # fit the signature. No retry can fix that, so it is dead-lettered.
            attempt.outcome = self._reject(
                attempt.delivery, request, f"arguments do not fit the task: {exc}"
            )
        else:
            attempt.outcome = self._gave_up(attempt, exc, runtime, store)

    def _gave_up(self, attempt: Attempt, exc: Exception, runtime: float, store: bool) -> Outcome:
        request, task = attempt.request, attempt.task
        assert request is not None and task is not None
        try:
            task.autoretry(exc, request)
        except Retry as retry:
            return self._retried(request, retry, store)
        except Exception as final:
            return self._failed(attempt, final, runtime, store)
        return self._failed(attempt, exc, runtime, store)

    def release(self, attempt: Attempt) -> None:
        """Give back the concurrency slot the attempt held (once)."""
        admission, attempt.admission = attempt.admission, None
        if admission is not None and admission.slot is not None:
            self.gate.release(admission)

    # settle -----------------------------------------------------------------------------
    def settle(self, attempt: Attempt) -> None:
        """Ack the delivery with its result (one write-behind step where the broker holds
        the results too), or store the result alone when it was acked early."""
        outcome = attempt.outcome
        write = outcome.result if outcome is not None else None
        if not attempt.acks_late:
            if write is not None:
                self.store(write)
        elif write is not None and not self.carries_results:
            self.app.backend.store(write.task_id, write.payload, write.final)
            self.consumer.ack(attempt.delivery)
        else:
            self.consumer.ack(attempt.delivery, write)

    def store(self, write: ResultWrite) -> None:
        """Store a state through the consumer (write-behind) when it can, else the
        backend."""
        if not self.consumer.store(write):
            self.app.backend.store(write.task_id, write.payload, write.final)

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
    def _failed(self, attempt: Attempt, exc: Exception, runtime: float, store: bool) -> Outcome:
        request, delivery = attempt.request, attempt.delivery
        assert request is not None
        tb = traceback_module.format_exc()
        self.hooks.task_failed(request, exc, tb, runtime)
        if not self.acks_on_failure:
            self.app.coordinator.dead_letter(delivery.body, delivery.queue, failure_reason(exc))
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
        self.app.coordinator.dead_letter(delivery.body, delivery.queue, reason)
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
        self.store(ResultWrite(request.id, encode_meta(meta), False))


def _head_request(body: bytes) -> Context | None:
    """The request of a message that will not run, as far as its id and name can be
    read without trusting it."""
    head = message_head(body)
    return None if head is None else Context(id=head.id, task=head.task)


def _bad_call(exc: TypeError) -> bool:
    """True when the TypeError was raised by calling the task function, not inside it:
    the innermost frame is the call site (``Attempt.execute`` or ``Attempt.call``, or
    ``Task.run``)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code in _CALL_SITES


# Where the task body is called from: a TypeError raised in one of these frames is the
# call not fitting the signature.
_CALL_SITES = (Attempt.execute.__code__, Attempt.call.__code__, Task.run.__code__)


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
