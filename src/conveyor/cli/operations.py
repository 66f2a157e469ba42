"""Operator commands: ``revoke`` and ``dlq`` (the dead-letter queue)."""

from __future__ import annotations

import datetime
import json

import click

from .main import AppContext


@click.command()
@click.argument("task_ids", nargs=-1, required=True, metavar="TASK_ID...")
@click.option("--terminate", is_flag=True, help="Also stop the task if it is running.")
@click.option(
    "--signal",
    "signal_name",
    default="SIGTERM",
    show_default=True,
    help="Signal used by --terminate.",
)
@click.pass_obj
def revoke(obj: AppContext, task_ids: tuple[str, ...], terminate: bool, signal_name: str) -> None:
    """Revoke tasks: no worker runs them (stored in the broker, so workers that start
    later honour it too)."""
    obj.app.control.revoke(list(task_ids), terminate=terminate, signal=signal_name)
    what = "revoked and terminated if running" if terminate else "revoked"
    click.echo(f"{len(task_ids)} task{'s' if len(task_ids) != 1 else ''} {what}.")


@click.group()
def dlq() -> None:
    """The dead-letter queue: messages no worker could run, with the reason."""


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


@dlq.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_obj
def dlq_list(obj: AppContext, limit: int, as_json: bool) -> None:
    """List the newest dead letters."""
    letters = obj.app.coordinator.dead_letters(limit=limit)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"id": d.id, "queue": d.queue, "reason": d.reason, "time": d.time}
                    for d in letters
                ]
            )
        )
        return
    if not letters:
        click.echo("The dead-letter queue is empty.")
        return
    for d in letters:
        click.echo(f"{d.id}  {_when(d.time)}  [{d.queue}]  {d.reason}")


@dlq.command("show")
@click.argument("letter_id")
@click.pass_obj
def dlq_show(obj: AppContext, letter_id: str) -> None:
    """Show one dead letter, with its message body."""
    letter = obj.app.coordinator.dead_letter_by_id(letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter with id {letter_id!r} (see 'dlq list')")
    click.echo(f"id:     {letter.id}\nqueue:  {letter.queue}\ntime:   {_when(letter.time)}")
    click.echo(f"reason: {letter.reason}")
    click.echo(f"body:   {letter.body.decode('utf-8', 'backslashreplace')}")


@dlq.command("replay")
@click.argument("letter_ids", nargs=-1, metavar="[ID...]")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.pass_obj
def dlq_replay(obj: AppContext, letter_ids: tuple[str, ...], replay_all: bool) -> None:
    """Send dead letters back to their queue (after fixing what made them fail)."""
    if not letter_ids and not replay_all:
        raise click.UsageError("give dead-letter ids, or --all")
    if letter_ids and replay_all:
        raise click.UsageError("give dead-letter ids or --all, not both")
    count = obj.app.producer.replay(None if replay_all else list(letter_ids))
    if letter_ids and count < len(letter_ids):
        raise click.ClickException(f"replayed {count} of {len(letter_ids)}: some ids are unknown")
    click.echo(f"Replayed {count} message{'s' if count != 1 else ''}.")


@dlq.command("purge")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def dlq_purge(obj: AppContext, force: bool) -> None:
    """Delete every dead letter."""
    if not force:
        click.confirm("Delete every dead letter? This cannot be undone", abort=True)
    count = obj.app.coordinator.remove_dead_letters(None)
    click.echo(f"Deleted {count} dead letter{'s' if count != 1 else ''}.")


COMMANDS = [revoke, dlq]
