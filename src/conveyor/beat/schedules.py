"""When periodic tasks are due: fixed intervals and crontab, in the app's time zone.

Both answer two questions, in epoch seconds, so that beat can keep its state (the last
tick of each entry) in the broker as a plain number:

- ``next_due(after, tz)``: the first due time strictly after ``after``;
- ``latest_due(last, now, tz)``: the latest due time in ``(last, now]``, or None. After
  downtime beat fires that one tick only: a missed run runs once, not once per tick.

``crontab`` follows cron (through croniter) in the app's ``timezone``, with cron's
daylight-saving rules: a fixed time that does not exist on the day clocks go forward
(02:30 in most of Europe and the US) runs once, right after the change; a fixed time
that happens twice on the day clocks go back runs once, at its first pass. A schedule
with a wildcard hour or minute (``minute=30`` = every hour) follows real time: it runs
in each hour that really happens, the repeated one included.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime, timedelta, tzinfo

from croniter import croniter

from ..exceptions import ConfigurationError

__all__ = ["BaseSchedule", "crontab", "schedule", "to_schedule"]

# After a long downtime, a crontab looks at most this many ticks ahead one by one.
_MAX_STEPS = 1000


class BaseSchedule(ABC):
    """A rule for when a periodic task is due."""

    @abstractmethod
    def next_due(self, after: float, tz: tzinfo) -> float:
        """The first due time strictly after ``after`` (epoch seconds)."""

    def latest_due(self, last: float, now: float, tz: tzinfo) -> float | None:
        """The latest due time in ``(last, now]``, or None when none is due yet."""
        due = self.next_due(last, tz)
        if due > now:
            return None
        for _ in range(_MAX_STEPS):
            following = self.next_due(due, tz)
            if following > now:
                return due
            due = following
        return self._latest_before(now, tz)

    def _latest_before(self, now: float, tz: tzinfo) -> float:
        """The latest due time at or before ``now`` (after a very long downtime)."""
        raise NotImplementedError  # pragma: no cover - both schedules answer it

    def window(self, tick: float, tz: tzinfo) -> float:
        """Seconds from ``tick`` to the following one."""
        return self.next_due(tick, tz) - tick


class schedule(BaseSchedule):  # Celery's name: celery.schedules.schedule
    """Every ``run_every`` (seconds or a ``timedelta``), counted from the last tick."""

    def __init__(self, run_every: float | timedelta) -> None:
        seconds = run_every.total_seconds() if isinstance(run_every, timedelta) else run_every
        if not seconds or seconds <= 0:
            raise ConfigurationError(f"a schedule's interval must be positive, got {run_every!r}")
        self.seconds = float(seconds)

    @property
    def run_every(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def next_due(self, after: float, tz: tzinfo) -> float:
        return after + self.seconds

    def latest_due(self, last: float, now: float, tz: tzinfo) -> float | None:
        if now < last + self.seconds:
            return None
        return last + ((now - last) // self.seconds) * self.seconds

    def __repr__(self) -> str:
        return f"<freq: {self.seconds:g}s>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, schedule) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(("schedule", self.seconds))


CronField = int | str | Iterable[int | str]


class crontab(BaseSchedule):  # Celery's name: celery.schedules.crontab
    """Cron-style: ``crontab(minute=0, hour=9, day_of_week="mon-fri")``.

    Each field takes what cron takes ("*", "*/15", "1-5", "mon,wed", "jan"), an int, or
    a collection of those. Days of the week count from Sunday = 0, as in cron and Celery.
    """

    def __init__(
        self,
        minute: CronField = "*",
        hour: CronField = "*",
        day_of_week: CronField = "*",
        day_of_month: CronField = "*",
        month_of_year: CronField = "*",
    ) -> None:
        self.minute = _field(minute)
        self.hour = _field(hour)
        self.day_of_week = _field(day_of_week)
        self.day_of_month = _field(day_of_month)
        self.month_of_year = _field(month_of_year)
        self.expression = " ".join(
            (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        )
        if not croniter.is_valid(self.expression):
            raise ConfigurationError(f"invalid crontab: {self!r}")
        # cron's rule for a repeated hour: fixed times run once, wildcards each hour.
        self._fixed_time = "*" not in self.minute and "*" not in self.hour

    def next_due(self, after: float, tz: tzinfo) -> float:
        cron = croniter(self.expression, datetime.fromtimestamp(after, tz))
        while True:
            due: float = cron.get_next(float)
            if not (self._fixed_time and _second_pass(due, after, tz)):
                return due

    def _latest_before(self, now: float, tz: tzinfo) -> float:
        latest: float = croniter(
            self.expression, datetime.fromtimestamp(now + 1e-6, tz)
        ).get_prev(float)
        return latest

    def __repr__(self) -> str:
        return (
            f"<crontab: {self.minute} {self.hour} {self.day_of_week} {self.day_of_month} "
            f"{self.month_of_year} (m/h/dw/dM/MY)>"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and other.expression == self.expression

    def __hash__(self) -> int:
        return hash(("crontab", self.expression))


def _field(value: CronField) -> str:
    if isinstance(value, (int, str)):
        text = str(value).strip()
    else:
        text = ",".join(str(v).strip() for v in value)
    if not text:
        raise ConfigurationError("a crontab field cannot be empty")
    return text.replace(" ", "")


def _second_pass(due: float, after: float, tz: tzinfo) -> bool:
    """True when ``due`` is the second pass of a wall-clock time (clocks went back) whose
    first pass was at or before ``after``: already fired, or already gone."""
    local = datetime.fromtimestamp(due, tz)
    if not local.fold:
        return False
    first = local.replace(fold=0).timestamp()
    return first < due and first <= after


def to_schedule(value: object) -> BaseSchedule:
    """A ``beat_schedule`` entry's ``schedule``: seconds, a timedelta, or a schedule."""
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, timedelta) or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
    ):
        return schedule(value)
    raise ConfigurationError(
        f"a periodic task's schedule must be seconds, a timedelta or a crontab, not {value!r}"
    )
