"""The worker: supervisor, pools, consume loop, executor and hooks."""

from .hooks import EVENTS, WorkerHooks
from .main import Worker

__all__ = ["EVENTS", "Worker", "WorkerHooks"]
