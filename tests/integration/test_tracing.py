"""OpenTelemetry: one trace from a web request to a task and its chained task, with
retries and failures on the spans; real Redis, a worker in this process (threads pool)
so the SDK's in-memory exporter sees both sides."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from conveyor import Conveyor, chain
from conveyor.observe.tracing import instrument
from conveyor.worker.main import Worker
from conveyor.worker.pools import run_in_process

from ..support import wait_for


@pytest.fixture
def traced(redis_url: str) -> Iterator[tuple[Conveyor, InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Conveyor(f"traced-{uuid.uuid4().hex[:6]}", broker=redis_url)

    @app.task(name="traced.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="traced.boom")
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="traced.flaky", bind=True, max_retries=1, default_retry_delay=0)
    def flaky(self: Any) -> int:
        if self.request.retries == 0:
            raise self.retry(exc=RuntimeError("first try fails"))
        return self.request.retries

    instrument(app, tracer_provider=provider)
    worker = Worker(app, pool="threads", concurrency=1, hostname=f"trace-{uuid.uuid4().hex[:6]}@%h")
    thread = threading.Thread(target=run_in_process, args=(worker, 1), daemon=True)
    thread.start()
    try:
        yield app, exporter, provider
    finally:
        worker.stop.set()
        thread.join(10)
        app.close()


def _spans(exporter: InMemorySpanExporter) -> list[Any]:
    return list(exporter.get_finished_spans())


def test_request_task_and_chained_task_are_one_trace(
    traced: tuple[Conveyor, InMemorySpanExporter, TracerProvider],
) -> None:
    app, exporter, provider = traced
    tracer = provider.get_tracer("web")
    with tracer.start_as_current_span("GET /export") as request_span:
        result = chain(app.signature("traced.add", (1, 2)), app.signature("traced.add", (3,)))()
    assert result.get(timeout=20) == 6
    wait_for(lambda: len([s for s in _spans(exporter) if s.name == "run traced.add"]) == 2,
             10, what="both runs traced")
    spans = _spans(exporter)
    trace_id = request_span.get_span_context().trace_id
    mine = [s for s in spans if s.context.trace_id == trace_id]
    sends = sorted((s for s in mine if s.name == "send traced.add"), key=lambda s: s.start_time)
    runs = sorted((s for s in mine if s.name == "run traced.add"), key=lambda s: s.start_time)
    assert len(sends) == 2 and len(runs) == 2
    assert all(s.kind == SpanKind.PRODUCER for s in sends)
    assert all(s.kind == SpanKind.CONSUMER for s in runs)
    # request -> send -> run -> send (the chain's next step) -> run
    assert sends[0].parent.span_id == request_span.get_span_context().span_id
    assert runs[0].parent.span_id == sends[0].context.span_id
    assert sends[1].parent.span_id == runs[0].context.span_id
    assert runs[1].parent.span_id == sends[1].context.span_id
    assert runs[0].attributes["messaging.message.id"] == sends[0].attributes["messaging.message.id"]
    assert all(s.status.status_code == StatusCode.OK for s in runs)


def test_failures_and_retries_are_on_the_spans(
    traced: tuple[Conveyor, InMemorySpanExporter, TracerProvider],
) -> None:
    app, exporter, _ = traced
    with pytest.raises(ValueError, match="boom"):
        app.send_task("traced.boom").get(timeout=20)
    assert app.send_task("traced.flaky").get(timeout=20) == 1
    wait_for(lambda: len([s for s in _spans(exporter) if s.name == "run traced.flaky"]) == 2,
             10, what="both runs of flaky traced")
    spans = _spans(exporter)
    (failed,) = [s for s in spans if s.name == "run traced.boom"]
    assert failed.status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" and "boom" in str(e.attributes) for e in failed.events)
    first, second = sorted(
        (s for s in spans if s.name == "run traced.flaky"), key=lambda s: s.start_time
    )
    assert first.attributes["conveyor.retry"] is True
    assert any(e.name == "exception" for e in first.events)
    assert second.status.status_code == StatusCode.OK
    assert first.context.trace_id == second.context.trace_id  # the retry stays in the trace
