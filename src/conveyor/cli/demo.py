"""``conveyor demo``: a realistic workload, end to end, on a machine with nothing set up.

It starts real ``conveyor worker`` processes on a fresh embedded broker (a SQLite file
in a temporary directory, or ``--broker redis://...``), sends a few thousand tasks of
the kinds people queue (model scoring, thumbnails, emails, webhooks that fail and are
retried, chains), shows progress, and ends with a table of throughput, retries and
latency per kind. Meanwhile the CPU worker's embedded beat (``-B``) sends a periodic
task every half second; the summary says how often it ran. It exits 1 if any task never came
back, and stops every process it started, also on Ctrl-C.

The app, tasks, workloads and output live in :mod:`conveyor.demo`; this module wires
them together. They are imported when the command runs, so other commands start no
slower for its being here.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from .main import AppContext

if TYPE_CHECKING:
    from rich.console import Console

    from ..app import Conveyor
    from ..dashboard.server import Background
    from ..demo.processes import WorkerNode

__all__ = ["demo"]

IO_THREADS = 8  # the emails and webhooks wait on the network: threads, not processes
RETRY_SLACK = 4  # tasks in flight beyond what the workers hold: retries waiting to be due
EXIT_OK = 0
EXIT_LOST = 1  # a task never came back, or a worker failed
EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C


@click.command()
@click.option(
    "-n",
    "--tasks",
    "count",
    type=click.IntRange(min=1),
    default=3000,
    show_default=True,
    help="How many tasks to send.",
)
@click.option(
    "-c",
    "--workers",
    "concurrency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes for the CPU-bound tasks (prefork).",
)
@click.option(
    "--broker",
    "broker_url",
    metavar="URL",
    help="Run on this broker (e.g. redis://localhost:6379/0) instead of a fresh "
    "SQLite file. The demo's keys and queues are its own.",
)
@click.option("--seed", type=int, default=None, help="Seed the workload, to repeat a run.")
@click.option(
    "--dashboard",
    "with_dashboard",
    is_flag=True,
    help="Serve the web dashboard on the run (workers store events), and keep it and "
    "the workers open afterwards until Ctrl-C.",
)
@click.option(
    "--dashboard-port", type=click.IntRange(1, 65535), default=5555, show_default=True
)
@click.pass_obj
def demo(
    obj: AppContext,
    count: int,
    concurrency: int,
    broker_url: str | None,
    seed: int | None,
    with_dashboard: bool,
    dashboard_port: int,
) -> None:
    """Run a realistic workload on real workers and show what happened."""
    import shutil
    import tempfile

    from rich.console import Console

    console = Console(highlight=False)
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-demo-"))
    url = broker_url or obj.broker or _sqlite_url(workdir)
    code: int | None = None
    try:
        port = dashboard_port if with_dashboard else None
        code = _run(console, url, obj.backend or url, workdir, count, concurrency, seed, port)
    finally:
        if code == EXIT_LOST:
            console.print(f"The workers' logs are kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)


def _sqlite_url(workdir: Path) -> str:
    if importlib.util.find_spec("conveyor.stores.sqlite.transport") is None:
        raise click.ClickException(
            "the embedded SQLite broker is not in this build of conveyor; run the demo on "
            "Redis instead: conveyor demo --broker redis://localhost:6379/0"
        )
    return f"sqlite:///{workdir / 'broker.db'}"


def _run(
    console: Console,
    url: str,
    backend_url: str,
    workdir: Path,
    count: int,
    concurrency: int,
    seed: int | None,
    dashboard_port: int | None = None,
) -> int:
    from ..demo import display
    from ..demo.app import CPU_QUEUE, HEARTBEAT_EVERY, IO_QUEUE, app
    from ..demo.processes import WorkerFailed, WorkerNode, WorkerSpec, wait_ready
    from ..demo.runner import PeriodicStats, Runner
    from ..demo.tasks import HEARTBEAT_LOG, heartbeat_report, read_heartbeats
    from ..demo.workloads import WORKLOADS
    from ..stores.urls import masked

    app.conf.broker_url = url
    app.conf.result_backend = backend_url
    queues = [CPU_QUEUE, IO_QUEUE]
    run_id = os.getpid()  # two demos on one Redis must not see each other's workers
    events = dashboard_port is not None
    specs = [
        WorkerSpec(
            f"demo-cpu-{run_id}@%h", "prefork", concurrency, [CPU_QUEUE], beat=True, events=events
        ),
        WorkerSpec(f"demo-io-{run_id}@%h", "threads", IO_THREADS, [IO_QUEUE], events=events),
    ]
    # In flight: enough to fill each CPU process's prefetch (4) and every I/O thread,
    # and a few more for the webhooks waiting out a retry's backoff. More only lengthens
    # the queue: the latency grows, the rate does not (measured).
    in_flight = 4 * concurrency + IO_THREADS + RETRY_SLACK
    runner = Runner(app, WORKLOADS, count, in_flight=in_flight, seed=seed)
    try:
        app.broker.purge(queues)  # what an interrupted run left on a shared broker
    except Exception as exc:
        raise click.ClickException(f"cannot use the broker {masked(url)}: {exc}") from None
    display.introduce(console, url, specs, runner, fresh=url.startswith(f"sqlite:///{workdir}"))
    nodes = [WorkerNode(spec, workdir / f"worker-{i + 1}.log") for i, spec in enumerate(specs)]
    heartbeats = workdir / "heartbeats.jsonl"  # heartbeat_report appends a line per run
    board = None
    if dashboard_port is not None:
        board = _start_dashboard(app, dashboard_port, workdir)
        console.print(f"[bold]Dashboard:[/] {board.url}  (open it in your browser)")
    with _signals_interrupt():
        try:
            started = time.monotonic()
            for node in nodes:
                command = node.spec.command("conveyor.demo.app", url, backend_url)
                node.start(command, env={HEARTBEAT_LOG: str(heartbeats)})
            took = wait_ready(app, nodes, timeout=30)
            console.print(f"Workers ready in {took:.2f}s; sending tasks.")
            with display.LiveProgress(console, runner) as progress:
                report = runner.run(on_progress=progress.update, check=lambda: _check(nodes))
            # A short run may end before beat's first tick (one period after it starts).
            _wait_for_file(heartbeats, HEARTBEAT_EVERY * 6, check=lambda: _check(nodes))
            stopping = time.monotonic()
        except KeyboardInterrupt:
            console.print("\n[yellow]Interrupted:[/] stopping the workers.")
            _stop(console, app, nodes, purge=queues, board=board)
            return EXIT_INTERRUPTED
        except WorkerFailed as exc:
            console.print(f"[red]A worker failed:[/] {exc}")
            _stop(console, app, nodes, purge=queues, board=board)
            return EXIT_LOST
        except BaseException:
            _stop(console, app, nodes, purge=queues, board=board)
            raise
        if board is None:
            _stop(console, app, nodes, purge=())
    report.periodic = PeriodicStats(
        heartbeat_report.name,
        HEARTBEAT_EVERY,
        fired=len(read_heartbeats(heartbeats)),  # complete: its workers have stopped
        window=stopping - started,
    )
    display.summarize(console, report, runner.workloads)
    display.how_to_continue(console)
    if board is not None:
        _keep_open(console, app, nodes, board)
    return EXIT_LOST if report.lost else EXIT_OK


def _start_dashboard(app: Conveyor, port: int, workdir: Path) -> Background:
    from ..dashboard.server import DashboardOptions, serve_in_thread
    from ..exceptions import ConfigurationError

    options = DashboardOptions(port=port, db=workdir / "dashboard.sqlite3")
    try:
        return serve_in_thread(app, options)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def _keep_open(
    console: Console, app: Conveyor, nodes: Sequence[WorkerNode], board: Background
) -> None:
    """The run is over; the workers (and beat's periodic task) and the dashboard stay,
    so the pages can be explored, until Ctrl-C."""
    console.print(
        f"\n[bold]The dashboard stays open at {board.url}[/] with the workers and beat "
        "running. Ctrl-C stops them."
    )
    with _signals_interrupt():
        try:
            while True:
                _check(nodes)
                time.sleep(0.5)
        except (KeyboardInterrupt, Exception) as exc:
            if not isinstance(exc, KeyboardInterrupt):
                console.print(f"[red]A worker failed:[/] {exc}")
    _stop(console, app, nodes, purge=(), board=board)


def _check(nodes: Sequence[WorkerNode]) -> None:
    for node in nodes:
        node.check()


def _wait_for_file(path: Path, timeout: float, check: Callable[[], None]) -> None:
    """Until something is written to ``path``, or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return
        check()
        time.sleep(0.02)


def _stop(
    console: Console,
    app: Conveyor,
    nodes: Sequence[WorkerNode],
    purge: Sequence[str],
    board: Background | None = None,
) -> None:
    # A second Ctrl-C must not cut the cleanup short and leave workers behind.
    from ..demo.processes import stop_all

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop_all(nodes)
    finally:
        signal.signal(signal.SIGINT, previous)
    if board is not None:
        board.stop()
    if purge:
        try:
            app.broker.purge(purge)
        except Exception as exc:  # the broker may be why the demo stopped
            console.print(f"(could not empty the demo's queues: {exc})")
    app.close()


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the demo as Ctrl-C does, so its workers are stopped too."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
