"""Celery's ``celery.contrib.django.task.DjangoTask``: in conveyor every task has
``delay_on_commit`` and ``apply_async_on_commit``, so it is the plain Task."""

from __future__ import annotations

from ...task import Task

DjangoTask = Task

__all__ = ["DjangoTask"]
