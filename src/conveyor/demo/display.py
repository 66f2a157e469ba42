"""What ``conveyor demo`` prints: the introduction, live progress, and the summary.

Written for someone who knows Celery and has never seen conveyor: say what is about to
happen, show it happening, then what came of it and how to go on with their own tasks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ..app import default_data_dir
from ..stores.urls import masked
from .processes import WorkerSpec
from .runner import PeriodicStats, Report, Runner
from .workloads import Workload

__all__ = ["LiveProgress", "how_to_continue", "introduce", "summarize"]


def introduce(
    console: Console, url: str, specs: Sequence[WorkerSpec], runner: Runner, *, fresh: bool
) -> None:
    """``fresh``: the demo made the broker (a SQLite file of its own) for this run."""
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1]
        file = f"a fresh SQLite file, {path}" if fresh else f"the SQLite file {path}"
        where = f"{file} (the embedded default broker: no server)"
    else:
        where = f"{masked(url)} (under keys and queues of the demo's own)"
    kinds = "; ".join(w.what for w in runner.workloads)
    workers = " and ".join(spec.describe() for spec in specs)
    periodic = ""
    if any(spec.beat for spec in specs):
        entries = runner.app.conf.beat_schedule or {}
        every = ", ".join(
            f"{str(e['task']).rsplit('.', 1)[-1]} every {e['schedule']:g} s"
            for e in entries.values()
            if isinstance(e.get("schedule"), (int, float))
        )
        periodic = f" Meanwhile beat sends {every} (app.conf.beat_schedule)." if every else ""
    console.print(
        f"[bold]conveyor demo[/]: a task queue at work with Celery's API, nothing to set up. "
        f"Messages and results live in {where}. It starts {len(specs)} workers, as "
        f"`conveyor worker` commands: {workers}. Then it sends {runner.total:,} tasks the "
        f"way a busy web app does, up to {runner.in_flight} in flight at a time: {kinds}. "
        f"Every task must come back with a result.{periodic}\n"
    )


class _RateColumn(ProgressColumn):
    """Results per second, as rich measures them over the last seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


class LiveProgress:
    """A bar per kind of task and one for all, fed by :meth:`Runner.run`'s callback."""

    def __init__(self, console: Console, runner: Runner) -> None:
        self.progress = Progress(
            "{task.description:>16}",
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.bars = [self.progress.add_task(k.kind, total=k.planned) for k in runner.kinds]
        self.overall = self.progress.add_task("all", total=runner.total)

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def update(self, runner: Runner) -> None:
        for bar, kind in zip(self.bars, runner.kinds, strict=True):
            self.progress.update(bar, completed=kind.done)
        self.progress.update(self.overall, completed=sum(k.done for k in runner.kinds))


def summarize(console: Console, report: Report, workloads: Sequence[Workload]) -> None:
    table = Table(title="What happened", title_justify="left")
    columns = ("kind", "tasks", "ok", "failed", "retries", "lost", "tasks/s", "p50", "p99")
    for column in columns:
        table.add_column(column, justify="left" if column == "kind" else "right")
    total = report.total()
    rows = [*report.kinds, total]
    for i, k in enumerate(rows):
        lost = k.sent - k.done
        table.add_row(
            k.kind,
            f"{k.sent:,}",
            f"{k.succeeded:,}",
            f"{k.failed:,}",
            f"{k.retries:,}",
            f"[red]{lost:,}[/]" if lost else "0",
            f"{k.throughput():,.0f}",
            _duration(k.percentile(0.5)),
            _duration(k.percentile(0.99)),
            end_section=i == len(rows) - 2,
        )
    console.print(table)
    elapsed = (total.last_done or 0.0) - (total.first_sent or 0.0)
    console.print(
        f"{total.done:,} results in {elapsed:.1f}s on {os.cpu_count()} CPU cores. "
        "Latency is from .delay() to the result stored by the worker (for a chain, "
        "to its last step's result; for a retried task, to its last attempt's)."
    )
    for workload in workloads:
        if workload.expected_failures:
            console.print(f"The failures are on purpose: {workload.expected_failures}.")
        if workload.expected_retries:
            console.print(f"The retries are on purpose: {workload.expected_retries}.")
    if report.periodic is not None:
        _periodic(console, report.periodic)
    if total.sent < total.planned:
        console.print(
            f"[bold red]Stopped early:[/] no result came for a while; {total.sent:,} of "
            f"{total.planned:,} tasks were sent."
        )
    if report.lost:
        shown = ", ".join(report.lost[:5]) + (" ..." if len(report.lost) > 5 else "")
        console.print(f"[bold red]{len(report.lost):,} tasks never came back:[/] {shown}")
    else:
        console.print(f"[bold green]All {total.sent:,} tasks came back; none was lost.[/]")


def _periodic(console: Console, periodic: PeriodicStats) -> None:
    name = periodic.task.rsplit(".", 1)[-1]
    times = "once" if periodic.fired == 1 else f"{periodic.fired:,} times"
    console.print(
        f"Periodic: beat, embedded in the CPU worker (-B), sent {name} every "
        f"{periodic.every:g} s (app.conf.beat_schedule); it ran {times} in the "
        f"{periodic.window:.1f} s the workers were up.",
        style=None if periodic.fired else "bold red",
    )


def how_to_continue(console: Console) -> None:
    source = Path(__file__).parent
    console.print(
        "\n[bold]Your turn.[/] Write tasks as you would for Celery, in tasks.py:\n\n"
        "    from conveyor import Celery\n\n"
        '    app = Celery("tasks")  # no broker_url: the SQLite file '
        f"{default_data_dir() / 'broker.db'}\n\n"
        "    @app.task\n"
        "    def add(x: int, y: int) -> int:\n"
        "        return x + y\n\n"
        "then start a worker:  conveyor -A tasks worker -l info\n"
        "and send it work:     python -c 'from tasks import add; print(add.delay(2, 3).get())'\n"
        "For Redis, set broker_url='redis://localhost:6379/0'. "
        f"The demo's own tasks are in {source}/tasks.py.",
        soft_wrap=True,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 10:
        return f"{seconds * 1000:,.0f} ms"
    return f"{seconds:.1f} s"
