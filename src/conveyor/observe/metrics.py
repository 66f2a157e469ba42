"""Prometheus metrics, fed by the worker's typed events (and the broker for queue depth).

Names follow Prometheus' conventions (``_total`` counters, ``_seconds`` units):

    conveyor_tasks_total{name,state}              tasks ended: succeeded, failed, retried,
                                                  revoked, rejected
    conveyor_task_runtime_seconds{name}           histogram of task run times
    conveyor_task_queue_seconds{name}             histogram of time in queue (sent or due
                                                  -> started)
    conveyor_task_retries_total{name}             retries asked for
    conveyor_dead_letters_total{name}             messages dead-lettered (task_rejected)
    conveyor_tasks_in_flight{name}                tasks running now
    conveyor_workers_up                           live workers (fresh heartbeats)
    conveyor_queue_depth{queue}                   messages waiting
    conveyor_queue_scheduled{queue}               messages held for their ETA
    conveyor_queue_oldest_message_age_seconds{queue}  age of the oldest waiting message

A prefork worker's children each write their own values (prometheus_client's
multiprocess mode: memory-mapped files in a directory of the worker's own), and the
HTTP server, in a process of its own, sums them; see :func:`prepare_multiprocess`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..events import (
    Listener,
    TaskFailed,
    TaskRejected,
    TaskRetried,
    TaskRevoked,
    TaskStarted,
    TaskSucceeded,
)
from ..worker.orphans import die_with_parent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from ..app import Conveyor

__all__ = [
    "BrokerCollector",
    "MetricsListener",
    "bind_server",
    "prepare_multiprocess",
    "registry_for",
    "serve_in_child",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from a quick INCR to a long export.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


def prepare_multiprocess(directory: str) -> None:
    """Point prometheus_client at ``directory`` for values shared between processes.
    Must run before prometheus_client is first imported (it picks its value class then)."""
    import sys

    if "prometheus_client" in sys.modules and os.environ.get(MULTIPROC_ENV) != directory:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(
            "--metrics-port with the prefork pool needs prometheus_client imported after the "
            f"worker starts (set {MULTIPROC_ENV} yourself if your app imports it)"
        )
    os.makedirs(directory, exist_ok=True)
    os.environ[MULTIPROC_ENV] = directory


class MetricsListener(Listener):
    """Counts and times tasks from the worker's events."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = registry if registry is not None else REGISTRY
        self.tasks = Counter(
            "conveyor_tasks", "Tasks ended, by name and state.", ["name", "state"],
            registry=registry,
        )
        self.runtime = Histogram(
            "conveyor_task_runtime_seconds", "Task run time.", ["name"], buckets=BUCKETS,
            registry=registry,
        )
        self.queued = Histogram(
            "conveyor_task_queue_seconds", "Time from send (or ETA) to start.", ["name"],
            buckets=BUCKETS, registry=registry,
        )
        self.retries = Counter(
            "conveyor_task_retries", "Retries asked for.", ["name"], registry=registry
        )
        self.dead_letters = Counter(
            "conveyor_dead_letters", "Messages dead-lettered.", ["name"], registry=registry
        )
        self.in_flight = Gauge(
            "conveyor_tasks_in_flight", "Tasks running now.", ["name"],
            multiprocess_mode="livesum", registry=registry,
        )

    def on_task_started(self, event: TaskStarted) -> None:
        self.in_flight.labels(event.name).inc()
        request = event.request
        sent = max(request.sent_at, request.eta or 0.0)
        if sent:
            self.queued.labels(event.name).observe(max(0.0, event.timestamp - sent))

    def on_task_succeeded(self, event: TaskSucceeded) -> None:
        self.tasks.labels(event.name, "succeeded").inc()
        self.runtime.labels(event.name).observe(event.runtime)
        self.in_flight.labels(event.name).dec()

    def on_task_failed(self, event: TaskFailed) -> None:
        self.tasks.labels(event.name, "failed").inc()
        if event.runtime is not None:
            self.runtime.labels(event.name).observe(event.runtime)
            self.in_flight.labels(event.name).dec()

    def on_task_retried(self, event: TaskRetried) -> None:
        self.tasks.labels(event.name, "retried").inc()
        self.retries.labels(event.name).inc()
        self.in_flight.labels(event.name).dec()

    def on_task_revoked(self, event: TaskRevoked) -> None:
        self.tasks.labels(event.name, "revoked").inc()
        if event.terminated:
            self.in_flight.labels(event.name).dec()

    def on_task_rejected(self, event: TaskRejected) -> None:
        name = event.name or "unknown"
        self.tasks.labels(name, "rejected").inc()
        self.dead_letters.labels(name).inc()


class BrokerCollector:
    """Read at each scrape from the broker: queue depths, oldest-message age, workers up
    (cheap reads of what the broker keeps anyway; task counts come from events)."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return []  # collected on scrape only: never touch the broker at registration

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from ..stores.probe import oldest_waiting

        broker = self.app.broker
        queues = broker.queues()
        depth = GaugeMetricFamily("conveyor_queue_depth", "Messages waiting.", labels=["queue"])
        scheduled = GaugeMetricFamily(
            "conveyor_queue_scheduled", "Messages held for their ETA.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "conveyor_queue_oldest_message_age_seconds",
            "Age of the oldest waiting message.",
            labels=["queue"],
        )
        oldest = oldest_waiting(broker, [q.name for q in queues])
        now = time.time()
        for queue in queues:
            depth.add_metric([queue.name], queue.ready)
            scheduled.add_metric([queue.name], queue.scheduled)
            since = oldest.get(queue.name)
            age.add_metric([queue.name], max(0.0, now - since) if since else 0.0)
        yield depth
        yield scheduled
        yield age
        workers = GaugeMetricFamily("conveyor_workers_up", "Live workers.")
        workers.add_metric([], len(self.app.coordinator.workers()))
        yield workers


def registry_for(app: Conveyor, multiprocess_dir: str | None = None) -> Any:
    """The registry an HTTP server exposes: the broker's gauges, plus the task metrics
    summed over the worker's processes (multiprocess) or this process's own."""
    from prometheus_client import REGISTRY, CollectorRegistry

    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        registry.register(_SettledFiles(multiprocess_dir))
    else:
        registry = REGISTRY
    registry.register(BrokerCollector(app))
    return registry


class _SettledFiles:
    """prometheus_client's multiprocess collector, skipping a file a process has just
    created and not yet sized (reading it raises struct.error: a 500 on that scrape)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Any:
        import glob

        from prometheus_client.multiprocess import MultiProcessCollector

        files = [
            name
            for name in glob.glob(os.path.join(self.path, "*.db"))
            if _size(name) > 0
        ]
        # prometheus_client leaves merge unannotated.
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # removed meanwhile (a dead process's live gauges)
        return 0


def bind_server(app: Conveyor, port: int, multiprocess_dir: str | None, host: str = "") -> Any:
    """An HTTP server for ``/metrics``, bound now (a port in use is an error at start)
    but not serving yet."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return  # a scrape every 15 s is not worth a log line

    wsgi = make_wsgi_app(registry_for(app, multiprocess_dir))
    try:
        return make_server(host, port, wsgi, handler_class=QuietHandler)
    except OSError as exc:
        from ..exceptions import ConfigurationError

        raise ConfigurationError(f"cannot serve metrics on port {port}: {exc.strerror}") from None


def serve_in_child(server: Any) -> int:
    """Serve ``server`` from a child process of its own, so the prefork supervisor stays
    single-threaded (forking a process with threads can deadlock the child); the child
    dies with its parent. Returns the child's pid."""
    import signal

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.set_wakeup_fd(-1)
            server.serve_forever()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    server.socket.close()
    return pid
