"""``conveyor control``: steer running workers (Celery's commands and arguments)."""

from __future__ import annotations

from typing import Any

import click

from ..exceptions import ConveyorError
from .main import AppContext
from .remote import echo_answers, remote_options

# command -> its arguments, each (name, type)
METHODS: dict[str, tuple[tuple[str, type], ...]] = {
    "shutdown": (),
    "pool_grow": (("n", int),),
    "pool_shrink": (("n", int),),
    "add_consumer": (("queue", str),),
    "cancel_consumer": (("queue", str),),
    "rate_limit": (("task_name", str), ("rate_limit", str)),
    "time_limit": (("task_name", str), ("soft", float), ("hard", float)),
}


@click.command()
@click.argument("method", type=click.Choice(list(METHODS)), metavar="METHOD")
@click.argument("arguments", nargs=-1, metavar="[ARG...]")
@remote_options
@click.pass_obj
def control(
    obj: AppContext,
    method: str,
    arguments: tuple[str, ...],
    destination: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Steer running workers: shutdown | pool_grow N | pool_shrink N | add_consumer QUEUE |
    cancel_consumer QUEUE | rate_limit TASK RATE | time_limit TASK SOFT HARD

    \b
    Examples:
      conveyor -A proj control pool_grow 2
      conveyor -A proj control add_consumer emails -d w1@host
      conveyor -A proj control rate_limit proj.tasks.send_email 10/m
    """
    values = _parse(method, arguments)
    control = obj.app.control
    if method == "rate_limit":
        # Held by the broker for every worker together (promise 4), not per worker.
        try:
            control.rate_limit(values["task_name"], values["rate_limit"])
        except (ValueError, ConveyorError) as exc:
            raise click.BadParameter(str(exc), param_hint="RATE") from None
        echo_answers({"broker": {"ok": "new rate limit set for every worker"}}, as_json)
        return
    names = [n.strip() for n in destination.split(",")] if destination else None
    replies = control.broadcast(
        method, values, destination=names, reply=True, timeout=timeout
    )
    answers: dict[str, Any] = {}
    for reply in replies or ():
        answers.update(reply)
    echo_answers(answers, as_json)


def _parse(method: str, arguments: tuple[str, ...]) -> dict[str, Any]:
    spec = METHODS[method]
    if len(arguments) != len(spec):
        wanted = " ".join(name.upper() for name, _ in spec) or "no arguments"
        raise click.UsageError(f"{method} takes {wanted} (got {len(arguments)} arguments)")
    values: dict[str, Any] = {}
    for (name, kind), raw in zip(spec, arguments, strict=True):
        try:
            values[name] = kind(raw)
        except ValueError:
            raise click.BadParameter(
                f"{raw!r} is not a valid {kind.__name__}", param_hint=name.upper()
            ) from None
    return values
