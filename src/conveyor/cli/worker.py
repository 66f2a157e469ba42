"""``conveyor worker``: start a worker, with Celery's flags."""

from __future__ import annotations

import logging
import sys

import click

from ..app import Conveyor
from ..exceptions import ConfigurationError
from ..limits import parse_rate
from ..worker.autoscale import parse_autoscale
from ..worker.logs import setup_logging
from ..worker.main import Worker
from .main import AppContext, loglevel_option

logger = logging.getLogger("conveyor.worker")


@click.command()
@loglevel_option
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Child processes (prefork), threads, greenlets, or tasks at once per process "
    "(asyncio). [default: number of CPUs]",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    metavar="N",
    help="asyncio pool: event-loop processes, each running up to -c tasks at once. "
    "[default: 1]",
)
@click.option(
    "-P",
    "--pool",
    metavar="NAME",
    help="Pool implementation: prefork, threads, solo, asyncio, gevent, eventlet, or one "
    "registered with conveyor.worker.pools.register_pool. [default: prefork]",
)
@click.option(
    "--autoscale",
    metavar="MAX,MIN",
    help="Grow the pool up to MAX processes (prefork) or threads while tasks wait, and "
    "shrink it to MIN when idle for worker_autoscale_keepalive seconds. Starts with MIN.",
)
@click.option(
    "-Q",
    "--queues",
    metavar="Q1,Q2",
    help="Comma-separated queues to consume, served round robin. [default: celery]",
)
@click.option(
    "-n",
    "--hostname",
    metavar="NAME@%h",
    help="Worker name; %h is the host name, %n its first label, %d its domain.",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    metavar="N",
    help="Replace a child process after it ran N tasks.",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    metavar="KIB",
    help="Replace a child process after its task when its RSS exceeds KIB kilobytes.",
)
@click.option(
    "--prefetch-multiplier",
    type=click.IntRange(min=1),
    metavar="N",
    help="Messages each process (or thread) leases ahead. [default: 4]",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="On SIGTERM, how long running tasks may take before a cold stop. [default: 30]",
)
@click.option(
    "--rate-limit",
    metavar="RATE",
    callback=lambda _ctx, _param, value: _checked_rate(value),
    help="Default rate limit (e.g. 10/m) for the tasks this worker runs that set none of "
    "their own; held across all workers together, like every conveyor rate limit.",
)
@click.option(
    "-B",
    "--beat",
    is_flag=True,
    help="Also run beat (periodic tasks), in a child process. Safe on several workers: "
    "one beat leads.",
)
@click.option(
    "-E",
    "--task-events",
    is_flag=True,
    help="Keep task and worker events in the broker's event stream (conveyor events).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: Celery's lines (worker_log_format); json: one object per line with the "
    "task id, name, queue, worker and retries.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    metavar="PORT",
    help="Serve Prometheus metrics on this port (http://host:PORT/metrics).",
)
@click.pass_obj
def worker(
    obj: AppContext,
    loglevel: str,
    concurrency: int | None,
    processes: int | None,
    pool: str | None,
    queues: str | None,
    hostname: str | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    prefetch_multiplier: int | None,
    shutdown_timeout: float | None,
    rate_limit: str | None,
    beat: bool,
    task_events: bool,
    log_format: str,
    metrics_port: int | None,
    autoscale: str | None,
) -> None:
    """Start a worker that consumes tasks from the broker and runs them."""
    setup_logging(loglevel, log_format=log_format)  # until the app's settings are read
    if metrics_port is not None:
        _share_metrics_between_processes()
    app = obj.app
    conf = app.conf
    if task_events:
        conf.worker_send_task_events = True
    setup_logging(
        loglevel,
        log_format=log_format,
        worker_log_format=conf.worker_log_format,
        worker_task_log_format=conf.worker_task_log_format,
        hijack_root_logger=bool(conf.worker_hijack_root_logger),
    )
    _warn_without_tasks(obj.spec, app)
    if shutdown_timeout is not None:
        app.conf.worker_shutdown_timeout = shutdown_timeout
    if rate_limit is not None:
        # task_default_rate_limit in this worker: a task without a rate_limit of its own
        # is admitted at this rate, counted in the broker under the task's name.
        app.conf.task_default_rate_limit = rate_limit
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    runner = Worker(
        app,
        queues=queue_list,
        concurrency=concurrency,
        pool=pool,
        hostname=hostname,
        max_tasks_per_child=max_tasks_per_child,
        max_memory_per_child=max_memory_per_child,
        prefetch_multiplier=prefetch_multiplier,
        app_label=obj.spec,
        beat=beat,
        metrics_port=metrics_port,
        processes=processes,
        autoscale=parse_autoscale(autoscale) if autoscale else None,
    )
    sys.exit(runner.start())


def _share_metrics_between_processes() -> None:
    """Before the app (and so prometheus_client) is imported: every process of this
    worker writes its metrics in a directory of the worker's own, removed at exit."""
    import atexit
    import shutil
    import tempfile

    from ..observe.metrics import prepare_multiprocess

    directory = tempfile.mkdtemp(prefix="conveyor-metrics-")
    prepare_multiprocess(directory)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _checked_rate(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_rate(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _warn_without_tasks(spec: str | None, app: Conveyor) -> None:
    """A worker with none of the user's tasks dead-letters everything it is sent as an
    unknown task: say so at start, not one message at a time."""
    if spec is None:
        logger.warning(
            "no app given (-A): this worker knows only conveyor's built-in tasks, none of "
            "yours; start it as 'conveyor -A proj worker'"
        )
        return
    app.import_default_modules()
    if all(name.startswith("conveyor.") for name in app.tasks):
        logger.warning(
            "the app %r has no tasks of yours: import the modules that define them from "
            "it, or list them in include=[...]",
            spec,
        )
