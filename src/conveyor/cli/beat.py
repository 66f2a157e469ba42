"""``conveyor beat``: send periodic tasks on schedule (Celery's ``celery beat``)."""

from __future__ import annotations

import sys

import click

from ..worker.logs import setup_logging
from .main import AppContext, loglevel_option


@click.command()
@loglevel_option
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.5),
    metavar="SECONDS",
    help="Leader lease: another beat takes over this long after the leader dies. "
    "[default: beat_lease_seconds, 10]",
)
@click.option(
    "--max-interval",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Longest sleep between two looks at the schedule. [default: 5]",
)
@click.option(
    "-s",
    "--schedule",
    "schedule_file",
    metavar="PATH",
    hidden=True,
    help="Accepted for Celery compatibility and ignored: the state lives in the broker.",
)
@click.pass_obj
def beat(
    obj: AppContext,
    loglevel: str,
    lease_seconds: float | None,
    max_interval: float | None,
    schedule_file: str | None,
) -> None:
    """Send the app's periodic tasks (beat_schedule) when they are due.

    Run as many as you like: one leads (a lease in the broker) and fires each tick;
    another takes over within the lease when it dies.
    """
    from ..beat.service import Beat

    setup_logging(loglevel)
    sys.exit(Beat(obj.app, lease_seconds=lease_seconds, max_interval=max_interval).run())
