"""``conveyor inspect``: ask running workers what they are doing (Celery's commands)."""

from __future__ import annotations

import click

from .main import AppContext
from .remote import echo_answers, remote_options

METHODS = (
    "active",
    "reserved",
    "scheduled",
    "registered",
    "stats",
    "ping",
    "active_queues",
    "revoked",
    "query_task",
)


@click.command()
@click.argument("method", type=click.Choice(METHODS), metavar="METHOD")
@click.argument("arguments", nargs=-1, metavar="[TASK_ID...]")
@remote_options
@click.pass_obj
def inspect(
    obj: AppContext,
    method: str,
    arguments: tuple[str, ...],
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Ask running workers: active | reserved | scheduled | registered | stats | ping |
    active_queues | revoked | query_task TASK_ID...

    \b
    Examples:
      conveyor -A proj inspect active
      conveyor -A proj inspect stats -d w1@host --json
      conveyor -A proj inspect query_task 1f0c... 7a2b...
    """
    if method == "query_task" and not arguments:
        raise click.UsageError("query_task needs one or more task ids")
    if method != "query_task" and arguments:
        raise click.UsageError(f"{method} takes no arguments (got {' '.join(arguments)})")
    inspector = obj.app.control.inspect(destination=_destinations(destination), timeout=timeout)
    answers = inspector.query_task(*arguments) if method == "query_task" else (
        getattr(inspector, method)()
    )
    echo_answers(answers, as_json)


def _destinations(destination: str | None) -> list[str] | None:
    if destination is None:
        return None
    return [name.strip() for name in destination.split(",") if name.strip()]
