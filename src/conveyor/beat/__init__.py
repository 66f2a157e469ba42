"""Beat: periodic tasks (intervals and crontab), with a leader lease in the broker so
that any number of beat processes can run and one fires each tick.

    schedules.py   when an entry is due (interval, crontab), in the app's time zone
    leader.py      the leader lease
    scheduler.py   entries, their state in the broker, sending each tick once
    service.py     ``conveyor beat``: the loop, signals, banner
"""

from __future__ import annotations

from .schedules import BaseSchedule, crontab, schedule

__all__ = ["BaseSchedule", "crontab", "schedule"]
