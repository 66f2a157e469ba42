"""``conveyor dashboard`` (and ``conveyor flower``, accepting Flower's flags that mean
the same): the web UI over the broker's event stream, workers and queues."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .main import AppContext

__all__ = ["dashboard", "flower"]


def _options(command: click.Command) -> click.Command:
    for option in [
        click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True),
        click.option("--address", default="127.0.0.1", show_default=True,
                     help="Interface to listen on (other than loopback needs --basic-auth "
                     "or --token)."),
        click.option("--url-prefix", "--url_prefix", "url_prefix", default="", metavar="PATH",
                     help="Serve under this path, behind a proxy (e.g. /conveyor)."),
        click.option("--basic-auth", "--basic_auth", "basic_auth", multiple=True,
                     metavar="USER:PASSWORD", help="A user (repeat, or separate with commas)."),
        click.option("--token", default=None, metavar="TOKEN",
                     help="A bearer token that opens the dashboard (setting dashboard_token; "
                     "a browser gives it once as ?token=...)."),
        click.option("--read-only", is_flag=True, help="Nobody may act: pages only."),
        click.option("--read-only-user", multiple=True, metavar="USER",
                     help="This --basic-auth user may look but not act (repeat)."),
        click.option("--db", type=click.Path(path_type=Path), default=None,
                     help="The history file (default: one per broker in the data dir)."),
        click.option("--max-tasks", "--max_tasks", "max_tasks", type=click.IntRange(min=1),
                     default=None, help="Tasks the history keeps (dashboard_max_tasks)."),
    ]:
        command = option(command)
    return command


def _run(
    obj: AppContext, port: int, address: str, url_prefix: str, basic_auth: tuple[str, ...],
    read_only: bool, read_only_user: tuple[str, ...], db: Path | None, max_tasks: int | None,
    token: str | None,
) -> None:
    from ..dashboard.security import parse_users
    from ..dashboard.server import DashboardOptions, serve

    try:
        users = parse_users(basic_auth)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--basic-auth") from None
    options = DashboardOptions(
        port=port, address=address, url_prefix=url_prefix, users=users, read_only=read_only,
        read_only_users=frozenset(read_only_user), db=db, max_tasks=max_tasks, token=token,
    )
    serve(obj.app, options, say=lambda line: click.echo(line, err=True))


@click.command()
@click.pass_obj
def _dashboard(obj: AppContext, /, **kwargs: Any) -> None:
    """Serve the web dashboard: tasks, workers, queues, beat and dead letters, live.
    Workers need -E (worker_send_task_events) for the task history."""
    _run(obj, **kwargs)


@click.command()
@click.pass_obj
def _flower(obj: AppContext, /, **kwargs: Any) -> None:
    """The dashboard under Flower's name, taking Flower's flags (--port, --address,
    --basic_auth, --url_prefix, --max_tasks, --db)."""
    _run(obj, **kwargs)


dashboard = _options(_dashboard)
dashboard.name = "dashboard"
flower = _options(_flower)
flower.name = "flower"
