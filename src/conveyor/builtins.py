"""The tasks every app has, because workflows send them (Celery's ``celery.*`` builtins).

conveyor.chord_join   a chord's join: the header's results in order, or ChordError;
                      the body is its callback, so the list reaches it as an argument
conveyor.accumulate   a group's results as one result (a chord member ending in a group)
conveyor.map          ``task.map(items)``: the task called on each item, in one message
conveyor.starmap      ``task.starmap(calls)`` and the parts of ``task.chunks(...)``
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import states
from .canvas import ACCUMULATE, CHORD_JOIN, MAP, STARMAP, Signature, failure_text
from .exceptions import ChordError
from .stores.results import decode_meta

if TYPE_CHECKING:
    from .app import Conveyor
    from .task import Task

__all__ = ["register_builtins"]


def register_builtins(app: Conveyor) -> None:
    """Give ``app`` the tasks workflows send: the chord join, map and starmap."""
    app.task(name=CHORD_JOIN, bind=True, ignore_result=True)(_chord_join)
    app.task(name=ACCUMULATE, typing=False)(_accumulate)
    app.task(name=MAP, bind=True)(_map)
    app.task(name=STARMAP, bind=True)(_starmap)


def _chord_join(self: Task[..., Any], chord_id: str) -> list[Any]:
    """The header's results, in header order; ChordError if one did not succeed. Its
    callback is the chord's body, so they reach the body as its first argument."""
    backend = self.app.backend
    members = backend.chord_members(chord_id)
    if members is None:
        raise ChordError(f"chord {chord_id} is unknown here (its record expired?)")
    values: list[Any] = []
    for start in range(0, len(members), 1000):
        ids = members[start : start + 1000]
        for task_id, raw in zip(ids, backend.get_many(ids), strict=True):
            meta = decode_meta(raw) if raw is not None else None
            if meta is None or meta.status != states.SUCCESS:
                raise ChordError(failure_text(chord_id, task_id, meta))
            values.append(meta.result)
    return values


def _accumulate(values: list[Any]) -> list[Any]:
    """The list of a group's results, as one task's result: what a chord header member
    ending in a group contributes (Celery's ``celery.accumulate``)."""
    return values


def _map(self: Task[..., Any], task: dict[str, Any], it: list[Any]) -> list[Any]:
    """``task.map(it)``: the task called on each item, here, in turn."""
    run = Signature.from_dict(task, self.app)
    return [run(item) for item in it]


def _starmap(self: Task[..., Any], task: dict[str, Any], it: list[list[Any]]) -> list[Any]:
    """``task.starmap(it)`` and chunks: the task called with each argument list."""
    run = Signature.from_dict(task, self.app)
    return [run(*call) for call in it]
