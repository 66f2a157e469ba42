"""Beat on the memory broker with a driven clock: schedules, daylight-saving changes,
missed ticks, restarts, the leader lease, and Celery's ways of declaring entries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor import Conveyor
from conveyor.beat.scheduler import Scheduler
from conveyor.exceptions import ConfigurationError
from conveyor.message import decode_envelope
from conveyor.schedules import crontab, schedule

NEW_YORK = ZoneInfo("America/New_York")
LONG = 1e9  # a lease and loop interval longer than any test: only the clock moves


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app() -> Iterator[Conveyor]:
    app = Conveyor("beat-test", broker=f"memory://{uuid.uuid4().hex}", set_as_current=False)
    app.conf.beat_max_loop_interval = LONG
    yield app
    app.close()


def run_until(scheduler: Scheduler, clock: Clock, end: datetime) -> None:
    """Tick, jumping the clock to each due time, until ``end``."""
    while clock.now < end.timestamp():
        wait = scheduler.tick()
        clock.now = min(clock.now + wait, end.timestamp())
    scheduler.tick()


def sent(app: Conveyor) -> list[tuple[str, datetime, str]]:
    """(entry name, due time in New York, task id) of every message sent, in order."""
    consumer = app.broker.consumer(["celery"], "reader", 10)
    out = []
    while batch := consumer.fetch(1000, timeout=0):
        for delivery in batch:
            envelope = decode_envelope(delivery.body, frozenset({"json"}))
            due = datetime.fromtimestamp(envelope.headers["beat_due"], NEW_YORK)
            out.append((envelope.headers["periodic_task_name"], due, envelope.id))
    consumer.close()
    return sorted(out, key=lambda item: item[1])


def local_times(fired: list[tuple[str, datetime, str]], name: str) -> list[str]:
    return [due.strftime("%m-%d %H:%M %Z") for entry, due, _ in fired if entry == name]


def dst_entries() -> dict[str, dict[str, object]]:
    return {
        "daily-9": {"task": "tasks.report", "schedule": crontab(minute=0, hour=9)},
        "at-0230": {"task": "tasks.report", "schedule": crontab(minute=30, hour=2)},
        "at-0130": {"task": "tasks.report", "schedule": crontab(minute=30, hour=1)},
        "hourly": {"task": "tasks.report", "schedule": crontab(minute=30)},
    }


def test_crontab_across_the_autumn_change_fires_at_the_right_wall_clock_times(
    app: Conveyor,
) -> None:
    # America/New_York, 2024-11-03: 02:00 EDT becomes 01:00 EST (01:00-02:00 happens twice).
    app.conf.timezone = "America/New_York"
    app.conf.beat_schedule = dst_entries()
    clock = Clock(datetime(2024, 11, 2, 6, 0, tzinfo=NEW_YORK))
    scheduler = Scheduler(app, clock=clock, lease_seconds=LONG)
    run_until(scheduler, clock, datetime(2024, 11, 4, 12, 0, tzinfo=NEW_YORK))
    fired = sent(app)
    # A daily time is the same wall-clock time each day; in UTC it moves by an hour.
    assert local_times(fired, "daily-9") == [
        "11-02 09:00 EDT", "11-03 09:00 EST", "11-04 09:00 EST"
    ]  # fmt: skip
    assert [d.astimezone(UTC).hour for n, d, _ in fired if n == "daily-9"] == [13, 14, 14]
    # A fixed time inside the repeated hour runs once, at its first pass (as cron does).
    assert local_times(fired, "at-0130") == ["11-03 01:30 EDT", "11-04 01:30 EST"]
    # Every hour means every real hour: the repeated one too.
    hourly = local_times(fired, "hourly")
    assert hourly[hourly.index("11-03 00:30 EDT") : hourly.index("11-03 03:30 EST") + 1] == [
        "11-03 00:30 EDT", "11-03 01:30 EDT", "11-03 01:30 EST", "11-03 02:30 EST",
        "11-03 03:30 EST",
    ]  # fmt: skip
    assert len(hourly) == 55  # 54 wall-clock hours, and the one that happened twice


def test_crontab_across_the_spring_change_fires_at_the_right_wall_clock_times(
    app: Conveyor,
) -> None:
    # America/New_York, 2024-03-10: 02:00 EST becomes 03:00 EDT (02:00-03:00 never happens).
    app.conf.timezone = "America/New_York"
    app.conf.beat_schedule = dst_entries()
    clock = Clock(datetime(2024, 3, 9, 6, 0, tzinfo=NEW_YORK))
    scheduler = Scheduler(app, clock=clock, lease_seconds=LONG)
    run_until(scheduler, clock, datetime(2024, 3, 11, 12, 0, tzinfo=NEW_YORK))
    fired = sent(app)
    assert local_times(fired, "daily-9") == [
        "03-09 09:00 EST", "03-10 09:00 EDT", "03-11 09:00 EDT"
    ]  # fmt: skip
    assert [d.astimezone(UTC).hour for n, d, _ in fired if n == "daily-9"] == [14, 13, 13]
    # 02:30 does not exist on the 10th: it runs once, right after the change (as cron).
    assert local_times(fired, "at-0230") == ["03-10 03:00 EDT", "03-11 02:30 EDT"]
    hourly = local_times(fired, "hourly")
    assert "03-10 01:30 EST" in hourly and "03-10 03:30 EDT" in hourly
    assert not any(t.startswith("03-10 02:") for t in hourly)
    assert len(hourly) == 53  # 54 wall-clock hours, one of which never happened


def test_after_downtime_a_missed_tick_fires_once_and_a_restart_repeats_nothing(
    app: Conveyor,
) -> None:
    app.conf.beat_schedule = {"every-10s": {"task": "tasks.ping", "schedule": 10.0}}
    start = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    clock = Clock(start)
    beats: list[Scheduler] = []

    def restart() -> Scheduler:
        if beats:
            beats[-1].close()  # a stopped beat; a new process takes over
        beats.append(Scheduler(app, clock=clock, lease_seconds=LONG))
        return beats[-1]

    restart().tick()  # first seen: due in 10 s
    assert sent(app) == []
    clock.now += 10
    restart().tick()
    assert len(sent(app)) == 1
    # A restarted beat at the same time sends nothing again.
    restart().tick()
    assert sent(app) == []
    # Down for an hour and 5 s: 360 ticks were missed; the latest one is sent, once.
    clock.now += 3605
    wait = restart().tick()
    (only,) = sent(app)
    assert only[1] == datetime.fromtimestamp(start.timestamp() + 3610, NEW_YORK)
    assert wait == pytest.approx(5.0)  # back on the entry's own grid


def test_a_tick_has_a_deterministic_id_and_is_sent_once(app: Conveyor) -> None:
    app.conf.beat_schedule = {"every-10s": {"task": "tasks.ping", "schedule": 10.0}}
    scheduler = Scheduler(app, lease_seconds=LONG)
    entry = scheduler.entries[0]
    first = scheduler.send(entry, 1_700_000_000.0)
    again = scheduler.send(entry, 1_700_000_000.0)  # e.g. a leader that paused too long
    other = scheduler.send(entry, 1_700_000_010.0)
    assert first == again != other
    assert [task_id for _, _, task_id in sent(app)] == [first, other]


def test_one_beat_leads_and_another_takes_over_when_it_stops(app: Conveyor) -> None:
    app.conf.beat_schedule = {"fast": {"task": "tasks.ping", "schedule": 0.05}}
    one = Scheduler(app, owner="one", lease_seconds=5)
    two = Scheduler(app, owner="two", lease_seconds=5)
    assert one.lease.hold() and not two.lease.hold()
    assert app.coordinator.lease_owner("beat") == "one"
    assert two.tick() == two.lease.retry_every  # a follower only waits
    one.close()  # a clean stop drops the lease
    assert two.lease.hold()
    assert app.coordinator.lease_owner("beat") == "two"


def test_on_after_configure_and_add_periodic_task_as_celery_users_write_them(
    app: Conveyor,
) -> None:
    @app.task
    def ping(word: str) -> str:
        return word

    class Sig:  # what canvas signatures offer: a task name, args, kwargs, options
        task = "tasks.other"
        args = (1,)
        kwargs = {"x": 2}
        options = {"queue": "low"}

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Conveyor, **kwargs: object) -> None:
        sender.add_periodic_task(10.0, ping, args=("hello",), name="ping every 10")
        sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1), Sig(), name="mon")
        sender.add_periodic_task(timedelta(minutes=1), Sig(), priority=3)

    app.conf.beat_schedule = {"from-conf": {"task": "tasks.x", "schedule": 5}}
    app.finalize()
    app.finalize()  # once only
    table = app.conf.beat_schedule
    assert set(table) == {"from-conf", "ping every 10", "mon", "tasks.other(1,){'x': 2}"}
    assert table["ping every 10"]["task"] == ping.name
    assert table["ping every 10"]["args"] == ("hello",)
    assert table["mon"]["options"] == {"queue": "low"}
    assert table["tasks.other(1,){'x': 2}"]["options"] == {"queue": "low", "priority": 3}
    assert Conveyor("another", set_as_current=False).conf.beat_schedule == {}


def test_schedules_read_celery_forms() -> None:
    utc = ZoneInfo("UTC")
    assert schedule(timedelta(seconds=30)).next_due(100.0, utc) == 130.0
    assert crontab(minute="*/15").expression == "*/15 * * * *"
    assert crontab(minute=0, hour=[9, 17], day_of_week="mon-fri").expression == "0 9,17 * * mon-fri"
    noon = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
    assert crontab(minute=0, hour=13).next_due(noon, utc) == noon + 3600
    with pytest.raises(ConfigurationError):
        crontab(minute=75)
    with pytest.raises(ConfigurationError):
        schedule(0)


def test_a_long_downtime_on_a_crontab_still_fires_once() -> None:
    utc = ZoneInfo("UTC")
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    now = datetime(2024, 3, 1, 10, 7, tzinfo=UTC).timestamp()
    every_minute = crontab()
    assert every_minute.latest_due(start, now, utc) == now  # 86,000 minutes later
    assert crontab(minute=5).latest_due(start, now, utc) == now - 120
