"""``conveyor``: the command line, in Celery's shape (``conveyor -A proj worker -l info``)."""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from typing import Any

import click

from .. import __version__
from ..app import Conveyor
from ..exceptions import AppNotFound, BrokerUnavailable, ConveyorError
from .loader import find_app

__all__ = ["cli", "main"]


LEVELS = ("debug", "info", "warning", "error", "critical")

# -l/--loglevel, shared by the commands that run for long (worker, beat).
loglevel_option = click.option(
    "-l",
    "--loglevel",
    default="warning",
    show_default=True,
    type=click.Choice(LEVELS, case_sensitive=False),
    help="Logging level.",
)


# Each command's module, imported when the command is run (or listed by --help): a
# worker imports none of the others' modules (issue 17, start to first task).
COMMAND_MODULES: dict[str, tuple[str, str]] = {
    "worker": ("worker", "worker"),
    "inspect": ("inspect", "inspect"),
    "control": ("control", "control"),
    "exporter": ("exporter", "exporter"),
    "events": ("events", "events"),
    "beat": ("beat", "beat"),
    "demo": ("demo", "demo"),
    "dashboard": ("dashboard", "dashboard"),
    "flower": ("dashboard", "flower"),
    "call": ("commands", "call"),
    "result": ("commands", "result"),
    "purge": ("commands", "purge"),
    "status": ("commands", "status"),
    "revoke": ("operations", "revoke"),
    "dlq": ("operations", "dlq"),
}


class LazyCommands(click.Group):
    """A group whose built-in commands are imported by name when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module, attribute = COMMAND_MODULES[cmd_name]
            command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


class AppContext:
    """What ``-A``, ``--broker`` and ``--result-backend`` say, resolved on first use."""

    def __init__(self, spec: str | None, broker: str | None, backend: str | None) -> None:
        self.spec = spec
        self.broker = broker
        self.backend = backend
        self._app: Conveyor | None = None

    @property
    def app(self) -> Conveyor:
        if self._app is None:
            app = find_app(self.spec) if self.spec else Conveyor("default")
            if self.broker:
                app.conf.broker_url = self.broker
            if self.backend:
                app.conf.result_backend = self.backend
            self._app = app
        return self._app


@click.group(
    cls=LazyCommands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-A",
    "--app",
    "spec",
    metavar="MODULE[:ATTR]",
    envvar="CONVEYOR_APP",
    help="The app: a module with an 'app' or 'celery' attribute, or module:attr.",
)
@click.option("-b", "--broker", metavar="URL", help="Broker URL (overrides broker_url).")
@click.option(
    "--result-backend", metavar="URL", help="Result backend URL (overrides result_backend)."
)
@click.version_option(__version__, "--version", prog_name="conveyor")
@click.pass_context
def cli(
    ctx: click.Context, spec: str | None, broker: str | None, result_backend: str | None
) -> None:
    """conveyor: a distributed task queue with Celery's API.

    \b
    Examples:
      conveyor -A proj.tasks worker --loglevel=info -c 4 -Q default,emails
      conveyor -A proj.tasks beat --loglevel=info
      conveyor -A proj.tasks call proj.tasks.add --args '[2, 3]'
      conveyor -A proj.tasks status
      conveyor demo
    """
    ctx.obj = AppContext(spec, broker, result_backend)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: click's parsing, but every usage error in one line."""
    try:
        return cli.main(args=argv, prog_name="conveyor", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "conveyor"
        click.echo(f"Error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except BrokerUnavailable as exc:
        # One line naming the store and the reason, never a client library traceback.
        click.echo(str(exc), err=True)
        sys.exit(1)
    except (AppNotFound, ConveyorError) as exc:
        if isinstance(exc, AppNotFound) and exc.__cause__ is not None and _debugging():
            traceback.print_exception(exc.__cause__)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


def _debugging() -> bool:
    """``-l debug`` was given (the command set the root logger's level before it loaded
    the app), so an import error in the user's app shows its traceback."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)
