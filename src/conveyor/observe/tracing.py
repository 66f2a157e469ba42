"""OpenTelemetry spans (extra ``conveyor[otel]``): a producer span per send, a consumer
span per run, the context carried in the message headers (W3C ``traceparent``), so a
web request -> task -> chained task is one trace.

    from conveyor.observe.tracing import instrument
    instrument(app)                 # in the web process and in the worker's app module

A listener of ``app.events``: the producer's ``on_before_publish`` starts the send span
and injects its context into the headers (``on_task_sent`` ends it); the worker's
``on_task_started`` extracts it and starts the run span, which the outcome ends
(failures and retries recorded on it). The run span's context stays current on the
worker's thread until the next task starts there, so the sends a workflow makes after
the task returned (a chain's next step) are its children.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..events import (
    BeforePublish,
    Listener,
    TaskFailed,
    TaskRetried,
    TaskRevoked,
    TaskSent,
    TaskStarted,
    TaskSucceeded,
)

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["TracingListener", "instrument"]


def instrument(app: Conveyor, tracer_provider: Any = None) -> TracingListener:
    """Trace every send and run of ``app`` (subscribes a :class:`TracingListener`)."""
    listener = TracingListener(tracer_provider)
    app.events.subscribe(listener)
    return listener


class TracingListener(Listener):
    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:  # pragma: no cover - the extra is missing
            from ..exceptions import ConfigurationError

            raise ConfigurationError(
                "tracing needs OpenTelemetry: pip install 'conveyor[otel]'"
            ) from None
        self._context = context
        self._propagate = propagate
        self._trace = trace
        self.tracer = trace.get_tracer("conveyor", tracer_provider=tracer_provider)
        self._sending: dict[str, Any] = {}
        self._running: dict[str, Any] = {}
        # The running task's attached context: per thread, and per coroutine on the
        # asyncio pool (each runs in a context of its own), so concurrent tasks on one
        # loop never detach each other's.
        self._token: ContextVar[Any] = ContextVar("conveyor_trace_token", default=None)

    # producer side ----------------------------------------------------------------------
    def on_before_publish(self, event: BeforePublish) -> None:
        envelope = event.envelope
        span = self.tracer.start_span(
            f"send {envelope.task}",
            kind=self._trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "conveyor",
                "messaging.operation.type": "send",
                "messaging.destination.name": event.queue,
                "messaging.message.id": envelope.id,
                "conveyor.task.name": envelope.task,
                "conveyor.send.kind": event.kind,
                "conveyor.task.retries": envelope.retries,
            },
        )
        self._propagate.inject(event.headers, context=self._trace.set_span_in_context(span))
        self._sending[envelope.id] = span

    def on_task_sent(self, event: TaskSent) -> None:
        span = self._sending.pop(event.uuid, None)
        if span is not None:
            span.end()

    # worker side ------------------------------------------------------------------------
    def on_task_started(self, event: TaskStarted) -> None:
        self._leave_previous()
        parent = self._propagate.extract(event.request.headers or {})
        span = self.tracer.start_span(
            f"run {event.name}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "conveyor",
                "messaging.operation.type": "process",
                "messaging.destination.name": event.request.delivery_info.get("queue") or "",
                "messaging.message.id": event.uuid,
                "conveyor.task.name": event.name,
                "conveyor.task.retries": event.request.retries,
                "conveyor.worker": event.hostname,
            },
        )
        self._running[event.uuid] = span
        self._token.set(self._context.attach(self._trace.set_span_in_context(span)))

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        span = self._running.pop(event.uuid, None)
        if span is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.OK))
            span.end()

    def on_task_failed(self, event: TaskFailed) -> None:
        span = self._running.pop(event.uuid, None)
        if span is not None:
            span.record_exception(event.exception)
            span.set_status(
                self._trace.Status(self._trace.StatusCode.ERROR, type(event.exception).__name__)
            )
            span.end()

    def on_task_retried(self, event: TaskRetried) -> None:
        span = self._running.pop(event.uuid, None)
        if span is not None:
            if event.exception is not None:
                span.record_exception(event.exception)
            span.set_attribute("conveyor.retry", True)
            span.add_event("retry", {"reason": event.reason})
            span.end()

    def on_task_revoked(self, event: TaskRevoked) -> None:
        span = self._running.pop(event.uuid, None)
        if span is not None:
            span.set_attribute("conveyor.revoked", True)
            span.end()

    def _leave_previous(self) -> None:
        token = self._token.get()
        if token is not None:
            self._token.set(None)
            self._context.detach(token)
