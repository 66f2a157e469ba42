"""Small commands: call, result, purge, status."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from .. import states
from ..stores.transport import SharedSchedule
from .main import AppContext

# States after which `call --wait` and `result` exit non-zero.
UNSUCCESSFUL = states.PROPAGATE_STATES


def _json_option(value: str | None, what: str, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} must be JSON ({exc.msg})") from None
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"{what} must be a JSON {'list' if kind is list else 'object'}")
    return parsed


@click.command()
@click.argument("name")
@click.option(
    "-a", "--args", "args_json", metavar="JSON", help="Positional arguments as a JSON list."
)
@click.option(
    "-k", "--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments as a JSON object."
)
@click.option("--countdown", type=float, help="Run no earlier than this many seconds from now.")
@click.option("--queue", "-Q", help="Queue to send to (default: the task's route).")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after SECONDS.")
@click.pass_obj
def call(
    obj: AppContext,
    name: str,
    args_json: str | None,
    kwargs_json: str | None,
    countdown: float | None,
    queue: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Send task NAME and print its id."""
    args = _json_option(args_json, "--args", list)
    kwargs = _json_option(kwargs_json, "--kwargs", dict)
    try:
        result = obj.app.send_task(name, args, kwargs, countdown=countdown, queue=queue)
    except (TypeError, ValueError) as exc:
        # Arguments that do not fit the task, or a message over the size limit: one line.
        raise click.ClickException(str(exc)) from None
    click.echo(result.id)
    if wait:
        value = result.get(timeout=timeout, propagate=False)
        state = result.state
        if state in UNSUCCESSFUL:
            # A script can tell: the error on stderr, and a non-zero exit.
            click.echo(f"task {result.id} {state}: {_error_text(value)}", err=True)
            sys.exit(1)
        click.echo(json.dumps(value, default=repr))


@click.command()
@click.argument("task_id")
@click.option(
    "--traceback", "show_traceback", is_flag=True, help="Print the traceback of a failure."
)
@click.pass_obj
def result(obj: AppContext, task_id: str, show_traceback: bool) -> None:
    """Print the state and result of a task."""
    res = obj.app.AsyncResult(task_id)
    state = res.state
    if show_traceback and res.traceback:
        click.echo(res.traceback)
    else:
        value = res.info
        if isinstance(value, BaseException):
            value = _error_text(value)
        click.echo(json.dumps({"id": task_id, "state": state, "result": value}, default=repr))
    if state in UNSUCCESSFUL:
        sys.exit(1)


def _error_text(value: Any) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return str(value)


@click.command()
@click.option(
    "-Q", "--queues", metavar="Q1,Q2", help="Queues to purge. [default: the default queue]"
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(obj: AppContext, queues: str | None, force: bool) -> None:
    """Delete every waiting (and scheduled) message from queues."""
    app = obj.app
    names = [q.strip() for q in queues.split(",")] if queues else [app.conf.task_default_queue]
    if not force:
        click.confirm(
            f"Delete all messages in {', '.join(names)}? This cannot be undone", abort=True
        )
    count = app.broker.purge(names)
    click.echo(f"Purged {count} message{'s' if count != 1 else ''} from {', '.join(names)}.")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def status(obj: AppContext, as_json: bool) -> None:
    """Show queues with their depth, and the workers that are alive."""
    app = obj.app
    broker = app.broker
    queues = broker.queues()
    # RabbitMQ's delay levels hold every queue's ETA messages together: counted together.
    shared = broker.scheduled_total() if isinstance(broker, SharedSchedule) else None
    workers = app.coordinator.workers()
    if as_json:
        shown: dict[str, Any] = {
            "queues": [
                {"name": q.name, "ready": q.ready, "scheduled": q.scheduled} for q in queues
            ],
            "workers": workers,
        }
        if shared is not None:
            shown["scheduled_all_queues"] = shared
        click.echo(json.dumps(shown))
        return
    from rich.console import Console  # imported here: the worker never needs rich
    from rich.table import Table

    console = Console()
    table = Table(title="Queues")
    table.add_column("queue")
    table.add_column("ready", justify="right")
    table.add_column("scheduled", justify="right")
    for q in queues:
        table.add_row(q.name, str(q.ready), str(q.scheduled))
    console.print(table)
    if shared is not None:
        console.print(
            f"scheduled (ETA/countdown) for all queues together: {shared} "
            "(the broker keeps them in shared delay levels, not per queue)"
        )
    wtable = Table(title="Workers")
    for column in ("worker", "pool", "concurrency", "queues", "up"):
        wtable.add_column(column)
    for w in workers:
        up = time.time() - float(w.get("started_at", time.time()))
        wtable.add_row(
            str(w.get("hostname")),
            str(w.get("pool")),
            str(w.get("concurrency")),
            ", ".join(w.get("queues", [])),
            f"{up:.0f}s",
        )
    console.print(wtable)
    if not workers:
        console.print("No workers alive.")


COMMANDS = [call, result, purge, status]
