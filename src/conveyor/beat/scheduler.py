"""The scheduler: which periodic entries are due, and sending each tick exactly once.

State lives in the broker, not in a file: the last tick of each entry (epoch seconds,
on the schedule's own grid, not the time it was sent). So any beat process can take
over from another, and a restarted one neither repeats a tick nor sends every tick it
missed: after downtime, the latest missed tick is sent once.

A new entry (no state yet) is first due one period after beat first sees it, as with
Celery. Each tick's message has a deterministic id, uuid5(entry name, tick time), and is
sent with an idempotency key of the same two, so a tick sent twice (a leader that paused
past its lease, a crash between sending and recording) is one message.

The clock is injected (``clock=``) so tests can drive it across days and daylight-saving
changes without waiting.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..exceptions import ConfigurationError
from .leader import LeaderLease, default_owner
from .schedules import BaseSchedule, to_schedule

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["Entry", "Scheduler", "app_timezone", "entries_of"]

logger = logging.getLogger("conveyor.beat")

LEASE_NAME = "beat"
_TICK_IDS = uuid.UUID("0f6e3b1a-52f4-4c3e-9a43-6b1c0c2f7d10")
# The idempotency window of a tick: two periods, at least 5 minutes, at most a day.
_MIN_WINDOW = 300.0
_MAX_WINDOW = 86400.0


@dataclass(frozen=True)
class Entry:
    """One ``beat_schedule`` entry."""

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def entries_of(app: Conveyor) -> list[Entry]:
    """The app's periodic entries (``beat_schedule``, with ``add_periodic_task``'s)."""
    entries = []
    table: Mapping[str, Mapping[str, Any]] = app.conf.beat_schedule or {}
    for name, spec in table.items():
        if "task" not in spec or "schedule" not in spec:
            raise ConfigurationError(f"beat_schedule[{name!r}] needs a 'task' and a 'schedule'")
        entries.append(
            Entry(
                name=name,
                task=str(spec["task"]),
                schedule=to_schedule(spec["schedule"]),
                args=tuple(spec.get("args") or ()),
                kwargs=dict(spec.get("kwargs") or {}),
                options=dict(spec.get("options") or {}),
            )
        )
    return entries


def app_timezone(app: Conveyor) -> tzinfo:
    """The zone crontabs are read in: ``timezone`` (UTC by default); with no timezone
    and ``enable_utc = False``, this machine's local zone, as in Celery."""
    name = app.conf.timezone
    if not name:
        if app.conf.enable_utc:
            return ZoneInfo("UTC")
        local = time.localtime().tm_zone
        try:
            return ZoneInfo(local)
        except ZoneInfoNotFoundError:
            return ZoneInfo("UTC")
    if isinstance(name, tzinfo):
        return name
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"unknown timezone {name!r}") from None


class Scheduler:
    """Call :meth:`tick` in a loop; it returns how long to sleep."""

    def __init__(
        self,
        app: Conveyor,
        *,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        lease_seconds: float | None = None,
        entries: list[Entry] | None = None,
    ) -> None:
        self.app = app
        self.clock = clock
        conf = app.conf
        self.tz = app_timezone(app)
        self.entries = entries if entries is not None else entries_of(app)
        self.max_interval = float(conf.beat_max_loop_interval or 5.0)
        ttl = float(lease_seconds or conf.beat_lease_seconds)
        self.lease = LeaderLease(app.coordinator, LEASE_NAME, owner or default_owner(), ttl)

    def tick(self) -> float:
        """Send what is due, if this process leads; returns seconds until the next look."""
        if not self.entries:
            return self.max_interval
        if not self.lease.hold():
            return self.lease.wait_hint()
        now = self.clock()
        coordinator = self.app.coordinator
        state = coordinator.schedule_state([e.name for e in self.entries])
        recorded: dict[str, float] = {}
        wake = now + self.max_interval
        try:
            for entry in self.entries:
                last = state.get(entry.name)
                if last is None:
                    recorded[entry.name] = last = now  # first seen: due one period from now
                else:
                    due = entry.schedule.latest_due(last, now, self.tz)
                    if due is not None:
                        self.send(entry, due)
                        recorded[entry.name] = last = due
                wake = min(wake, entry.schedule.next_due(last, self.tz))
        finally:
            if recorded:
                coordinator.record_schedule_state(recorded)
        return max(0.0, min(wake - self.clock(), self.lease.wait_hint()))

    def send(self, entry: Entry, due: float) -> str:
        """Send one tick of ``entry``; returns the task id (the same for the same tick)."""
        due_ms = round(due * 1000)
        task_id = str(uuid.uuid5(_TICK_IDS, f"{entry.name}@{due_ms}"))
        options = dict(entry.options)
        headers = dict(options.pop("headers", None) or {})
        headers["periodic_task_name"] = entry.name
        headers["beat_due"] = due
        window = min(max(2 * entry.schedule.window(due, self.tz), _MIN_WINDOW), _MAX_WINDOW)
        for reserved in ("task_id", "idempotency_key", "idempotency_window"):
            options.pop(reserved, None)
        result = self.app.send_task(
            entry.task,
            entry.args,
            entry.kwargs,
            task_id=task_id,
            headers=headers,
            idempotency_key=f"beat:{entry.name}:{due_ms}",
            idempotency_window=window,
            **options,
        )
        if result.id != task_id:  # pragma: no cover - a different send holds the key
            logger.warning("beat: %s tick %s was already sent as %s", entry.name, due, result.id)
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        return task_id

    def close(self) -> None:
        self.lease.release()
