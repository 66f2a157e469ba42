"""Workflows run in the caller's process (``task_always_eager``, ``.apply()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import states
from ..result import AsyncResult, EagerResult
from ..task import new_task_id
from .signature import Signature, signature_dicts

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["apply_eager_links", "as_eager", "eager_failure"]


def as_eager(result: AsyncResult[Any]) -> EagerResult[Any]:
    """An eager step's result as an EagerResult (a nested group or chain yields one)."""
    if isinstance(result, EagerResult):
        return result
    from ..stores.results import ResultMeta

    try:
        value = result.get()
    except Exception as exc:
        meta = ResultMeta(
            task_id=result.id,
            status=states.FAILURE,
            exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            exc_args=[str(a) for a in exc.args],
        )
    else:
        meta = ResultMeta(task_id=result.id, status=states.SUCCESS, result=value)
    return EagerResult(result.id, meta, result.app)


def eager_failure(sig: Signature[Any], exc: BaseException) -> EagerResult[Any]:
    from ..stores.results import ResultMeta

    task_id = sig.id or new_task_id()
    meta = ResultMeta(
        task_id=task_id,
        status=states.FAILURE,
        exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        exc_args=[str(a) for a in exc.args],
        name=sig.task,
    )
    return EagerResult(task_id, meta, sig.app)


def apply_eager_links(
    result: EagerResult[Any], link: Any, link_error: Any, app: Conveyor | None = None
) -> None:
    """Eager mode: run a finished task's callbacks (or errbacks, with its id) now."""
    meta = result._meta()
    if meta is None:
        return
    if meta.status == states.SUCCESS:
        for data in signature_dicts(link) or ():
            Signature.from_dict(data, app).apply((meta.result,))
    elif meta.status in states.PROPAGATE_STATES:
        for data in signature_dicts(link_error) or ():
            Signature.from_dict(data, app).apply((result.id,))
