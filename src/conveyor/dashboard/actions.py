"""What the dashboard can change: each action is a POST from a form the page asks the
user to confirm, checked for the cross-site token and for a user who may act, and
answered with a redirect back to the page with one line saying what was done.

Each goes through the API a user would call (``app.control``, ``send_task``,
``producer.replay``), so the dashboard can do nothing the CLI cannot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .present import literal
from .security import CSRF_FIELD, csrf_ok

if TYPE_CHECKING:
    from .app import Dashboard

__all__ = ["ActionRefused", "routes"]

MAX_FORM_BYTES = 64 * 1024

Form = dict[str, str]
Action = Callable[["Dashboard", Request, Form], str]


class ActionRefused(Exception):
    """The action cannot be done as asked (the message says why; shown to the user)."""


def routes(board: Dashboard) -> list[Route]:
    def action(handler: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not getattr(request.state, "may_act", False):
                return PlainTextResponse("This user may look but not act.", status_code=403)
            body = await request.body()
            if len(body) > MAX_FORM_BYTES:
                return PlainTextResponse("Form too large.", status_code=413)
            form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
            if not csrf_ok(request, form.get(CSRF_FIELD)):
                return PlainTextResponse(
                    "Refused: this form did not come from this dashboard (cross-site token "
                    "missing or wrong). Reload the page and try again.",
                    status_code=403,
                )
            try:
                done = await run_in_threadpool(handler, board, request, form)
            except ActionRefused as exc:
                done = f"Not done: {exc}"
            return RedirectResponse(_back(board, request, form, done), status_code=303)

        return endpoint

    return [
        Route("/tasks/{task_id}/retry", action(retry_task), methods=["POST"]),
        Route("/tasks/{task_id}/revoke", action(revoke_task), methods=["POST"]),
        Route("/workers/{worker}/pool", action(resize_pool), methods=["POST"]),
        Route("/workers/{worker}/shutdown", action(shutdown_worker), methods=["POST"]),
        Route("/rate-limit", action(change_rate_limit), methods=["POST"]),
        Route("/dead/replay", action(replay_dead), methods=["POST"]),
        Route("/dead/purge", action(purge_dead), methods=["POST"]),
    ]


def _back(board: Dashboard, request: Request, form: Form, done: str) -> str:
    """Where the form came from (``next``, a path of this dashboard), else its page."""
    target = form.get("next") or ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(board.prefix + "/"):
        target = board.link("/")
    separator = "&" if "?" in target else "?"
    target = target.split("#", 1)[0]
    # A new "done" replaces an old one.
    if "done=" in target:
        path, _, query = target.partition("?")
        kept = {k: v[-1] for k, v in parse_qs(query).items() if k != "done"}
        target = path + ("?" + urlencode(kept) if kept else "")
        separator = "&" if kept else "?"
    return f"{target}{separator}{urlencode({'done': done})}"


def retry_task(board: Dashboard, request: Request, form: Form) -> str:
    """Send the task again with the arguments its events recorded. A failed task keeps
    its id (its page follows the new run); a revoked one gets a new id, since its own
    stays revoked for ``worker_revoke_expires``."""
    task_id = request.path_params["task_id"]
    row = board.history.task(task_id)
    if row is None or not row.name:
        raise ActionRefused(f"task {task_id} is not in the history")
    if row.state not in ("FAILURE", "REVOKED", "REJECTED"):
        raise ActionRefused(f"task {task_id} is {row.state}: only failed or revoked tasks retry")
    if row.args is None:
        raise ActionRefused(f"task {task_id}'s arguments were never recorded (no task-received)")
    args, kwargs = literal(row.args), literal(row.kwargs or "{}")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise ActionRefused(
            f"task {task_id}'s arguments were recorded as a repr that cannot be read back "
            "(an object, or cut at 1024 characters): send it again from code"
        )
    options: dict[str, object] = {}
    if row.queue:
        options["queue"] = row.queue
    if row.state == "FAILURE":
        options["task_id"] = task_id
    sent = board.app.send_task(row.name, args, kwargs, **options)
    if sent.id == task_id:
        return f"Task {task_id} sent again."
    return f"Task {task_id} sent again as {sent.id}."


def revoke_task(board: Dashboard, request: Request, form: Form) -> str:
    task_id = request.path_params["task_id"]
    terminate = form.get("terminate") == "1"
    board.app.control.revoke(task_id, terminate=terminate, signal=form.get("signal") or "SIGTERM")
    return f"Task {task_id} revoked{' and terminated' if terminate else ''}."


def resize_pool(board: Dashboard, request: Request, form: Form) -> str:
    worker = request.path_params["worker"]
    change = form.get("change")
    if change not in ("grow", "shrink"):
        raise ActionRefused(f"expected change=grow or shrink, got {change!r}")
    command = board.app.control.pool_grow if change == "grow" else board.app.control.pool_shrink
    answers = command(1, destination=[worker], reply=True, timeout=2.0) or []
    return _answered(worker, answers, f"pool {'grown' if change == 'grow' else 'shrunk'} by 1")


def shutdown_worker(board: Dashboard, request: Request, form: Form) -> str:
    worker = request.path_params["worker"]
    board.app.control.shutdown(destination=[worker])
    return f"Shutdown sent to {worker}: running tasks finish first."


def change_rate_limit(board: Dashboard, request: Request, form: Form) -> str:
    name = form.get("task") or ""
    if name not in board.app.tasks:
        raise ActionRefused(f"no task named {name!r} in this app")
    rate = (form.get("rate") or "").strip()
    try:
        board.app.control.rate_limit(name, rate or None)
    except Exception as exc:
        raise ActionRefused(str(exc)) from None
    if not rate:
        return f"{name}: back to the rate limit in its code."
    return f"{name}: rate limit {rate} for all workers." if rate != "0" else f"{name}: no limit."


def replay_dead(board: Dashboard, request: Request, form: Form) -> str:
    letter = form.get("id")
    count = board.app.producer.replay(None if letter == "all" or not letter else [letter])
    return f"Replayed {count} dead letter{'s' if count != 1 else ''}."


def purge_dead(board: Dashboard, request: Request, form: Form) -> str:
    letter = form.get("id")
    count = board.app.coordinator.remove_dead_letters(
        None if letter == "all" or not letter else [letter]
    )
    return f"Deleted {count} dead letter{'s' if count != 1 else ''}."


def _answered(worker: str, answers: list[dict[str, object]], what: str) -> str:
    for answer in answers:
        reply = answer.get(worker)
        if isinstance(reply, dict) and "error" in reply:
            raise ActionRefused(f"{worker}: {reply['error']}")
        if reply is not None:
            return f"{worker}: {what}."
    raise ActionRefused(f"{worker} did not answer within 2 s")
