"""What ``inspect`` and ``control`` share: the options and how answers are printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["echo_answers", "remote_options"]

F = TypeVar("F", bound=Callable[..., Any])


def remote_options(function: F) -> F:
    """``-d/--destination``, ``-t/--timeout`` and ``-j/--json``, as Celery's CLI has them."""
    function = click.option(
        "-j", "--json", "as_json", is_flag=True, help="Print the answers as one JSON object."
    )(function)
    function = click.option(
        "-t",
        "--timeout",
        type=click.FloatRange(min=0.001),
        default=1.0,
        show_default=True,
        help="Seconds to wait for the workers' answers.",
    )(function)
    function = click.option(
        "-d",
        "--destination",
        metavar="W1@HOST,W2@HOST",
        help="Only these workers (comma-separated names). [default: all]",
    )(function)
    return function


def echo_answers(answers: dict[str, Any] | None, as_json: bool) -> None:
    """Print ``{worker: answer}`` like Celery (``->  w1@host: OK`` then the answer), or as
    JSON; no answer at all is an error (exit code 1), as in Celery."""
    if not answers:
        if as_json:
            click.echo("{}")
        raise click.ClickException("No nodes replied within time constraint")
    if as_json:
        click.echo(json.dumps(answers, default=repr))
        return
    for worker, answer in answers.items():
        failed = isinstance(answer, dict) and "error" in answer
        click.echo(f"->  {worker}: {'ERROR' if failed else 'OK'}")
        for line in _lines(answer):
            click.echo(f"    {line}")
    count = len(answers)
    click.echo(f"\n{count} node{'s' if count != 1 else ''} online.")


def _lines(answer: Any) -> list[str]:
    if isinstance(answer, dict) and set(answer) <= {"ok", "error"}:
        return [str(answer.get("ok") or answer.get("error"))]
    if isinstance(answer, list):
        if not answer:
            return ["- empty -"]
        return [f"* {json.dumps(item, default=repr)}" for item in answer]
    return json.dumps(answer, indent=2, default=repr).splitlines()
