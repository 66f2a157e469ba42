"""The dashboard's pages: what each shows, read from the history, the broker and the
workers. Handlers are plain functions: starlette runs them in its thread pool, so the
blocking store clients never hold up the event loop."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..canvas.signature import CHORD_JOIN
from ..stores.probe import oldest_waiting
from .history import BUCKET_SECONDS, FINAL, STATES, TaskFilter, TaskRow
from .present import bars_chart, line_chart, literal

if TYPE_CHECKING:
    from .app import Dashboard

__all__ = ["routes"]

PAGE_SIZE = 50
CHART_BUCKETS = 60  # five minutes of 5 s bars
MIN_CHART_BUCKETS = 12
ID_PREFIX = re.compile(r"[0-9a-fA-F-]{6,36}")
SEARCH_WINDOW = 200_000  # tasks one page of an argument search reads at most (~200 ms)
SINCE_CHOICES = {"5m": 300, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
INSPECT_TIMEOUT = 0.5
OFFLINE_KEPT_SECONDS = 86400.0


def routes(board: Dashboard) -> list[Route]:
    def page(handler: Callable[[Dashboard, Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return handler(board, request)

        return endpoint

    return [
        Route("/", page(overview), name="overview"),
        Route("/tasks", page(tasks), name="tasks"),
        Route("/tasks/{task_id}", page(task), name="task"),
        Route("/workers", page(workers), name="workers"),
        Route("/queues", page(queues), name="queues"),
        Route("/beat", page(beat), name="beat"),
        Route("/dead", page(dead_letters), name="dead"),
    ]


# --- the summary on every page ------------------------------------------------------------
def summary(board: Dashboard) -> dict[str, Any]:
    counts = board.history.state_counts()
    try:
        queue_stats = board.app.broker.queues()
        alive = board.app.coordinator.workers()
    except Exception:  # shown as the store error banner instead
        queue_stats, alive = [], []
    return {
        "processed": counts.get("SUCCESS", 0),
        "failed": counts.get("FAILURE", 0),
        "running": counts.get("STARTED", 0),
        "retrying": counts.get("RETRY", 0),
        "enqueued": sum(q.ready for q in queue_stats),
        "scheduled": sum(q.scheduled for q in queue_stats),
        "workers": len(alive),
        "queue_stats": queue_stats,
        "alive": alive,
        "counts": counts,
    }


def overview(board: Dashboard, request: Request) -> Response:
    now = time.time()
    last = int(now // BUCKET_SECONDS)
    first = last - CHART_BUCKETS + 1
    known = {b: (s, f, r) for b, s, f, r in board.history.buckets(first * BUCKET_SECONDS)}
    if known:
        # History younger than the window: start the charts where it starts (a minute
        # at least), so a short run is not a sliver at the right edge.
        first = max(first, min(min(known) - 1, last - MIN_CHART_BUCKETS + 1))
    starts = list(range(first, last + 1))
    succeeded = [known.get(b, (0, 0, 0.0))[0] / BUCKET_SECONDS for b in starts]
    failed = [known.get(b, (0, 0, 0.0))[1] / BUCKET_SECONDS for b in starts]
    latency: list[float | None] = []
    for b in starts:
        s, f, spent = known.get(b, (0, 0, 0.0))
        latency.append(spent / (s + f) if s + f else None)
    top = summary(board)
    charts = {
        "throughput": bars_chart(
            starts, [("succeeded", "ok", succeeded), ("failed", "bad", failed)], "/s"
        ),
        "failures": bars_chart(starts, [("failed", "bad", failed)], "/s"),
        "latency": line_chart(starts, latency, "s"),
    }
    window = sum(succeeded) + sum(failed)
    return board.render(
        request,
        "overview.html",
        {
            "page": "overview",
            "top": top,
            "charts": charts,
            "rate_now": (sum(succeeded[-12:]) + sum(failed[-12:])) / min(12, len(starts)),
            "chart_from": starts[0] * BUCKET_SECONDS,
            "window_total": window * BUCKET_SECONDS,
            "queue_rows": _queue_rows(board, top),
            "worker_rows": _worker_rows(board, top, {}),
            "recent_failures": board.history.tasks(TaskFilter(state="FAILURE"), limit=5),
        },
    )


def tasks(board: Dashboard, request: Request) -> Response:
    query = request.query_params
    since_key = query.get("since") or ""
    where = TaskFilter(
        state=query.get("state") or None,
        name=query.get("name") or None,
        queue=query.get("queue") or None,
        worker=query.get("worker") or None,
        since=time.time() - SINCE_CHOICES[since_key] if since_key in SINCE_CHOICES else None,
        search=query.get("q") or None,
        search_args=not board.masking.hides_anything,  # a masked value is not for probing
    )
    before = _keyset(query.get("before"))
    started = time.perf_counter()
    term = (where.search or "").strip()
    if ID_PREFIX.fullmatch(term):
        # Looks like the start of a task id: the id index answers at once.
        by_id = TaskFilter(
            id_prefix=term,
            state=where.state,
            name=where.name,
            queue=where.queue,
            worker=where.worker,
            since=where.since,
        )
        if board.history.tasks(by_id, before=before, limit=1):
            where = by_id
    if where.search and where.search_args:
        where.floor = board.history.scan_floor(before, SEARCH_WINDOW)
    rows = board.history.tasks(where, before=before, limit=PAGE_SIZE + 1)
    took = time.perf_counter() - started
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    older = _older(kept_filters(query), rows[-1]) if more and rows else None
    searched_to = None
    if where.floor is not None and not more:
        # The window ran out before the page filled: the next page searches on below it.
        searched_to = where.floor[0]
        older = _older(kept_filters(query), where.floor)
    kept = kept_filters(query)
    return board.render(
        request,
        "tasks.html",
        {
            "page": "tasks",
            "top": summary(board),
            "rows": rows,
            "calls": {row.id: board.masking.call(row.args, row.kwargs) for row in rows},
            "filters": kept,
            "states": sorted(set(STATES.values())),
            "names": board.history.distinct("name"),
            "queue_names": board.history.distinct("queue"),
            "worker_names": board.history.distinct("worker"),
            "since_choices": list(SINCE_CHOICES),
            "older": older,
            "searched_to": searched_to,
            "paged": before is not None,
            "took_ms": took * 1000,
        },
    )


def task(board: Dashboard, request: Request) -> Response:
    task_id = request.path_params["task_id"]
    row = board.history.task(task_id)
    stored = _stored_result(board, task_id)
    if row is None and stored is None:
        raise HTTPException(404, f"no task {task_id!r} in the history or the result backend")
    timeline = board.history.timeline(row.seq) if row else []
    first = timeline[0]["timestamp"] if timeline else None
    parent = board.history.task(row.parent_id) if row and row.parent_id else None
    root = None
    if row and row.root_id and row.root_id not in (row.id, row.parent_id):
        root = board.history.task(row.root_id)
    return board.render(
        request,
        "task.html",
        {
            "page": "tasks",
            "top": summary(board),
            "task_id": task_id,
            "row": row,
            "stored": stored,
            "args": board.masking.args(row.args) if row else "",
            "kwargs": board.masking.kwargs(row.kwargs) if row else "",
            "timeline": timeline,
            "first": first,
            "parent": parent,
            "root": root,
            "children": board.history.children(task_id),
            "tree": _task_tree(board, row) if row else [],
            "final": row is not None and row.state in FINAL,
            "retryable": row is not None and row.state in ("FAILURE", "REVOKED", "REJECTED"),
        },
    )


def _task_tree(board: Dashboard, row: TaskRow) -> list[dict[str, Any]]:
    """The workflow drawn on a task's page: its root's tree, and for a chord's header
    task (which is its own root when the chord was sent alone) its chord."""
    tree = _workflow_tree(board, row)
    if row.chord_id and row.name != CHORD_JOIN and not _in_header(tree, row.id):
        tree = [*tree, *_chord_tree(board, row)]
    return tree


def _workflow_tree(board: Dashboard, row: TaskRow) -> list[dict[str, Any]]:
    """The task's workflow as nested nodes (``row``, ``children``, ``this``), from its
    root down by parent links; empty for a lone task."""
    if not row.root_id:
        return []
    members = board.history.workflow(row.root_id)
    if len(members) < 2:
        return []
    ids = {member.id for member in members}
    nodes: dict[str, dict[str, Any]] = {
        m.id: {"row": m, "children": [], "this": m.id == row.id, "header": _chord_header(board, m)}
        for m in members
    }
    top: list[dict[str, Any]] = []
    for member in members:
        parent = member.parent_id
        if parent in ids and parent != member.id:
            nodes[str(parent)]["children"].append(nodes[member.id])
        else:
            top.append(nodes[member.id])
    return top


def _chord_header(board: Dashboard, row: TaskRow) -> list[TaskRow]:
    """For a chord's join task, the header's tasks; empty for any other task."""
    if row.name != CHORD_JOIN:
        return []
    chord_id = row.chord_id
    if chord_id is None and row.args:  # folded before events carried the chord's id
        args = literal(row.args)
        chord_id = str(args[0]) if isinstance(args, list | tuple) and args else None
    return _header_tasks(board, chord_id) if chord_id else []


def _header_tasks(board: Dashboard, chord_id: str) -> list[TaskRow]:
    """A chord's header tasks, in the order the result backend keeps them (its record
    of the chord), else as the history saw them arrive."""
    try:
        members = board.app.backend.chord_members(chord_id) or []
    except Exception:  # the backend is away or keeps no chords: the history says less
        members = []
    if members:
        found = [board.history.task(member) for member in members[:200]]
        return [member for member in found if member is not None]
    return [t for t in board.history.chord(chord_id) if t.name != CHORD_JOIN]


def _chord_tree(board: Dashboard, row: TaskRow) -> list[dict[str, Any]]:
    """For a chord's header task, its chord: the join (or a placeholder until the last
    header task is done) with the header under it and the body as the join's child."""
    chord_id = str(row.chord_id)
    join = next((t for t in board.history.chord(chord_id) if t.name == CHORD_JOIN), None)
    body = board.history.children(join.id) if join else []
    return [
        {
            "row": join,
            "chord_id": chord_id,
            "this": False,
            "header": _header_tasks(board, chord_id),
            "children": [{"row": b, "children": [], "this": False, "header": []} for b in body],
        }
    ]


def _in_header(tree: list[dict[str, Any]], task_id: str) -> bool:
    """Is ``task_id`` drawn in ``tree`` as a chord's header task?"""
    return any(
        any(h.id == task_id for h in node["header"]) or _in_header(node["children"], task_id)
        for node in tree
    )


def _stored_result(board: Dashboard, task_id: str) -> dict[str, Any] | None:
    from ..stores.results import decode_meta

    try:
        raw = board.app.backend.get(task_id)
    except Exception:
        return None
    if raw is None:
        return None
    meta = decode_meta(raw)
    return {
        "status": meta.status,
        "result": json.dumps(meta.result, default=repr, ensure_ascii=False),
        "traceback": meta.traceback,
        "date_done": meta.date_done,
        "children": meta.children or [],
    }


def workers(board: Dashboard, request: Request) -> Response:
    stats = _inspect_stats(board)  # first: the counts below are then read together
    top = summary(board)
    return board.render(
        request,
        "workers.html",
        {
            "page": "workers",
            "top": top,
            "worker_rows": _worker_rows(board, top, stats),
            "task_names": sorted(n for n in board.app.tasks if not n.startswith("celery.")),
            "rate_limits": _rate_limits(board),
        },
    )


def _rate_limits(board: Dashboard) -> dict[str, str]:
    try:
        return board.app.coordinator.rate_limits()
    except Exception:
        return {}


def _inspect_stats(board: Dashboard) -> dict[str, Any]:
    try:
        return board.app.control.inspect(timeout=INSPECT_TIMEOUT).stats() or {}
    except Exception:  # no worker answered, or the store is away: the rows say less
        return {}


def _worker_rows(
    board: Dashboard, top: dict[str, Any], stats: dict[str, Any]
) -> list[dict[str, Any]]:
    """Live workers from the registry, with their pools and counts as they answered
    ``inspect stats``; workers only the history knows are listed as offline."""
    rows: dict[str, dict[str, Any]] = {}
    for info in top["alive"]:
        name = str(info.get("hostname"))
        running = board.history.running_on(name)
        concurrency = int(info.get("concurrency") or 1)
        answered = stats.get(name) or {}
        pool = answered.get("pool") or {}
        rows[name] = {
            "name": name,
            "online": True,
            "pool": info.get("pool"),
            "concurrency": int(pool.get("max-concurrency") or concurrency),
            "queues": info.get("queues") or [],
            "heartbeat": info.get("heartbeat"),
            "started_at": info.get("started_at"),
            "pid": info.get("pid"),
            "running": running,
            "load": len(running) / max(1, int(pool.get("max-concurrency") or concurrency)),
            "processed": sum((answered.get("total") or {}).values()) if answered else None,
            "answered": bool(answered),
        }
    for name, info, last, _online in board.history.workers():
        # Offline workers of the last day stay listed; older names (autoscaled pods,
        # renamed hosts) would only grow the page.
        if name not in rows and time.time() - last < OFFLINE_KEPT_SECONDS:
            rows[name] = {
                "name": name,
                "online": False,
                "pool": info.get("pool"),
                "concurrency": info.get("concurrency"),
                "queues": info.get("queues") or [],
                "heartbeat": last,
                "started_at": info.get("started_at"),
                "pid": info.get("pid"),
                "running": [],
                "load": 0.0,
                "processed": None,
                "answered": False,
            }
    return sorted(rows.values(), key=lambda r: (not r["online"], r["name"]))


def _queue_rows(board: Dashboard, top: dict[str, Any]) -> list[dict[str, Any]]:
    now = time.time()
    samples = list(board.follower.samples)
    out_last_minute = board.history.received_since(now - 60)
    older = next((s for s in samples if now - s.at >= 55), samples[0] if samples else None)
    consumers: dict[str, list[str]] = {}
    for info in top["alive"]:
        for queue in info.get("queues") or []:
            consumers.setdefault(str(queue), []).append(str(info.get("hostname")))
    rows = []
    names = {q.name for q in top["queue_stats"]} | set(consumers)
    by_name = {q.name: q for q in top["queue_stats"]}
    try:
        oldest = oldest_waiting(board.app.broker, sorted(names))
    except Exception:  # the store is away: the banner says so
        oldest = {}
    for name in sorted(names):
        stats = by_name.get(name)
        depth = (stats.ready + stats.scheduled) if stats else 0
        out_rate = out_last_minute.get(name, 0) / 60
        in_rate: float | None = None
        if older is not None and now - older.at >= 5:
            grew = depth - older.depths.get(name, 0)
            in_rate = max(0.0, grew / (now - older.at) + out_rate)
        rows.append(
            {
                "name": name,
                "ready": stats.ready if stats else 0,
                "scheduled": stats.scheduled if stats else 0,
                "in_rate": in_rate,
                "out_rate": out_rate,
                "consumers": consumers.get(name, []),
                "oldest": oldest.get(name),
            }
        )
    return rows


def queues(board: Dashboard, request: Request) -> Response:
    top = summary(board)
    rows = _queue_rows(board, top)
    return board.render(request, "queues.html", {"page": "queues", "top": top, "queue_rows": rows})


def beat(board: Dashboard, request: Request) -> Response:
    from ..beat.scheduler import LEASE_NAME, app_timezone, entries_of

    entries = entries_of(board.app)
    tz = app_timezone(board.app)
    state: dict[str, float] = {}
    leader = None
    error = None
    try:
        state = board.app.coordinator.schedule_state([e.name for e in entries])
        leader = board.app.coordinator.lease_owner(LEASE_NAME)
    except Exception as exc:
        error = str(exc)
    rows = []
    for entry in entries:
        last = state.get(entry.name)
        rows.append(
            {
                "name": entry.name,
                "task": entry.task,
                "schedule": str(entry.schedule),
                "args": board.masking.call(repr(entry.args), repr(entry.kwargs)),
                "last": last,
                "next": entry.schedule.next_due(last, tz) if last is not None else None,
            }
        )
    return board.render(
        request,
        "beat.html",
        {
            "page": "beat",
            "top": summary(board),
            "entries": rows,
            "leader": leader,
            "beat_error": error,
        },
    )


def dead_letters(board: Dashboard, request: Request) -> Response:
    from ..message import decode_envelope

    letters = board.app.coordinator.dead_letters(limit=200)
    accept = frozenset(board.app.conf.accept_content or ["json"]) | {"json"}
    rows = []
    for letter in letters:
        name = task_id = None
        try:
            envelope = decode_envelope(letter.body, accept)
            name, task_id = envelope.task, envelope.id
        except Exception:
            pass
        payload = letter.body.decode("utf-8", "backslashreplace")
        if board.masking.hides_anything:
            payload = f"({len(letter.body)} bytes, masked: dashboard_mask_args)"
        rows.append({"letter": letter, "name": name, "task_id": task_id, "payload": payload})
    return board.render(request, "dead.html", {"page": "dead", "top": summary(board), "rows": rows})


def _keyset(value: str | None) -> tuple[float, int] | None:
    """``before=<seen>_<seq>``: where the previous page ended."""
    if not value:
        return None
    seen, _, seq = value.partition("_")
    try:
        return float(seen), int(seq)
    except ValueError:
        raise HTTPException(400, f"expected before=<time>_<seq>, got {value!r}") from None


def kept_filters(query: Any) -> dict[str, str]:
    return {k: v for k, v in query.items() if k != "before" and v}


def _older(kept: dict[str, str], last: TaskRow | tuple[float, int]) -> str:
    from urllib.parse import urlencode

    seen, seq = (last.seen, last.seq) if isinstance(last, TaskRow) else last
    return "?" + urlencode({**kept, "before": f"{seen!r}_{seq}"})
