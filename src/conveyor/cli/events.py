"""``conveyor events``: the broker's event stream, live (a rich view) or as JSON lines."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict, deque
from typing import TYPE_CHECKING, Any

import click

from .main import AppContext

if TYPE_CHECKING:
    from rich.console import RenderableType

POLL_SECONDS = 0.5
BATCH = 1000


@click.command()
@click.option("--dump", is_flag=True, help="Print each event as one JSON line.")
@click.option(
    "--once",
    is_flag=True,
    help="Show what the stream holds now and exit (the view once, or the lines with --dump).",
)
@click.pass_obj
def events(obj: AppContext, dump: bool, once: bool) -> None:
    """Show task and worker events as workers started with -E store them (they survive
    restarts of workers and of this command, up to event_stream_max_len)."""
    from ..stores.eventlog import event_log_for

    log = event_log_for(obj.app.broker, obj.app.coordinator)
    view = None if dump else LiveView(live=not once)
    after: str | None = None
    try:
        while True:
            batch = log.read(after, BATCH)
            for event_id, body in batch:
                after = event_id
                if view is None:
                    click.echo(body.decode())
                else:
                    view.add(json.loads(body))
            if not batch and once:
                if view is not None:
                    view.show()
                return
            if view is not None and not once:
                view.show()
            if not batch:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        pass
    finally:
        if view is not None:
            view.stop()


class LiveView:
    """Rates, failures, the latest tasks and counts per task name: redrawn in place on a
    terminal (``live``), or printed once."""

    def __init__(self, live: bool = True) -> None:
        from rich.console import Console
        from rich.live import Live

        self.by_name: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.latest: deque[dict[str, Any]] = deque(maxlen=10)
        self.failures: deque[dict[str, Any]] = deque(maxlen=5)
        self.done_times: deque[float] = deque(maxlen=10_000)
        self.console = Console()
        self.live: Live | None = None
        if live:
            self.live = Live(console=self.console, refresh_per_second=4)
            self.live.start()

    def show(self) -> None:
        if self.live is not None:
            self.live.update(self.render())
        else:
            self.console.print(self.render())

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()

    def add(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        if not kind.startswith("task-"):
            return
        name = str(event.get("name") or "?")
        state = kind[len("task-") :]
        self.by_name[name][state] += 1
        if state in ("succeeded", "failed"):
            self.done_times.append(float(event.get("timestamp", 0.0)))
            self.latest.appendleft(event)
        if state == "failed":
            self.failures.appendleft(event)

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table

        now = time.time()
        rate = sum(1 for t in self.done_times if now - t <= 10) / 10
        names = Table(title=f"Tasks ({rate:.1f}/s over the last 10 s)")
        for column in ("task", "received", "started", "succeeded", "failed", "retried"):
            names.add_column(column, justify="left" if column == "task" else "right")
        for name, counts in sorted(self.by_name.items()):
            names.add_row(name, *(str(counts[s]) for s in
                                  ("received", "started", "succeeded", "failed", "retried")))
        latest = Table(title="Latest")
        for column in ("task", "id", "state", "runtime"):
            latest.add_column(column)
        for event in self.latest:
            runtime = event.get("runtime")
            latest.add_row(
                str(event.get("name")), str(event.get("uuid")), str(event.get("type")),
                f"{runtime:.4f}s" if isinstance(runtime, int | float) else "-",
            )
        failures = Table(title="Failures")
        failures.add_column("task")
        failures.add_column("exception")
        for event in self.failures:
            failures.add_row(str(event.get("name")), str(event.get("exception")))
        return Group(names, latest, failures)
