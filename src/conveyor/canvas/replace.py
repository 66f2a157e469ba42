"""``self.replace(sig)``: a running task hands its place in the workflow to ``sig``.

As Celery's ``Task.replace``: the replacement's last task takes the replaced task's id
(so results already held by callers resolve to the replacement's outcome), inherits its
callbacks (the rest of its chain, its ``link``s), its errbacks, and the chord it was a
header task of; a group becomes a chord collecting its results into one list. The
replaced task then ends with :class:`~conveyor.exceptions.Ignore`: nothing is stored
for it, nothing is counted twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .signature import ACCUMULATE, Signature, maybe_signature
from .workflows import chain, chord, countable, group, last_task

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..app import Conveyor
    from ..task import Context

__all__ = ["replacement"]


def replacement(
    sig: Signature[Any] | Mapping[str, Any], request: Context, app: Conveyor
) -> Signature[Any]:
    """``sig`` set up to take ``request``'s place (not sent)."""
    new = maybe_signature(sig, app).clone()
    if isinstance(new, chain) and not new.tasks:
        raise ValueError("cannot replace a task with an empty chain")
    if "chord" in new.options:
        raise ValueError("a signature replacing a task must not be part of a chord")
    if isinstance(new, group):
        # Linked callbacks must run once with the group's list: a chord gives them one.
        new = chord(new, Signature(ACCUMULATE, app=app), app=app)
    new = countable(new)  # a chain ending in a group: its list under one id
    for data in request.callbacks or ():
        new.link(data)
    for data in request.errbacks or ():
        new.link_error(data)
    assert request.id is not None
    new.freeze(request.id)
    last = last_task(new)
    if request.chord is not None:
        last.options["chord"] = request.chord  # counted in the replaced task's place
    if request.group is not None:
        last.options["group_id"] = request.group
    return new
