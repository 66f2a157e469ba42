"""Schedules for periodic tasks, where Celery keeps them (``celery.schedules``):

    from conveyor.schedules import crontab

    app.conf.beat_schedule = {
        "nightly-retrain": {"task": "ml.retrain", "schedule": crontab(minute=0, hour=3)},
        "every-ten-seconds": {"task": "tasks.ping", "schedule": 10.0},
    }
"""

from __future__ import annotations

from .beat.schedules import BaseSchedule, crontab, schedule

__all__ = ["BaseSchedule", "crontab", "schedule"]
