"""The worker's side of inspect and control: reads its inbox, answers each command.

In a prefork worker the supervisor polls the inbox between its other chores (it runs
no task, so it answers while every child is busy); threads and solo workers poll it
from a thread of their own. Commands are Celery's (``ping``, ``active``, ``stats`` ...);
an unknown command or one this pool cannot do gets ``{"error": ...}``, never silence.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..message import decode_envelope
from ..serializers import accepted
from ..stores.mailbox import mailbox_for
from ..stores.probe import ScheduledProbe, scheduled_messages
from .control import REPLY_TTL
from .views import RunningTask, UnsupportedCommand, WorkerView

if TYPE_CHECKING:
    from ..worker.main import Worker
    from .board import TaskBoard

__all__ = ["ControlResponder"]

logger = logging.getLogger("conveyor.worker")

# How often a threads/solo worker looks at its inbox (the supervisor looks every loop).
POLL_SECONDS = 0.05
# ``inspect scheduled`` lists at most this many ETA messages per queue, earliest first
# (a million scheduled tasks cost the workers nothing; listing them all would).
SCHEDULED_LIMIT = 1000

Handler = Callable[[dict[str, Any]], Any]


class ControlResponder:
    def __init__(self, worker: Worker, view: WorkerView, board: TaskBoard) -> None:
        self.worker = worker
        self.app = worker.app
        self.hostname = worker.hostname
        self.view = view
        self.board = board
        self.accept = accepted(self.app.conf.accept_content)
        self.handlers: dict[str, Handler] = {
            "ping": lambda _: {"ok": "pong"},
            "active": lambda _: self.active(),
            "reserved": lambda _: self.reserved(),
            "scheduled": lambda _: self.scheduled(),
            "registered": lambda _: sorted(n for n in self.app.tasks if not _builtin(n)),
            "stats": lambda _: self.stats(),
            "active_queues": lambda _: [_queue_info(q) for q in self.worker.queues],
            "revoked": lambda _: sorted(self.view.revocations.revoked),
            "query_task": self.query_task,
            "shutdown": self.shutdown,
            "pool_grow": self.pool_grow,
            "pool_shrink": self.pool_shrink,
            "add_consumer": self.add_consumer,
            "cancel_consumer": self.cancel_consumer,
            "time_limit": self.time_limit,
        }

    # polling --------------------------------------------------------------------------
    def poll(self) -> None:
        """Answer every command waiting in the inbox (never blocks for long)."""
        try:
            commands = mailbox_for(self.app.broker, self.app.coordinator).take(self.hostname)
        except Exception as exc:  # broker unreachable: the next poll tries again
            logger.debug("control: could not read the inbox (%s)", exc)
            return
        for raw in commands:
            self.handle(raw)

    def serve(self, stop: threading.Event) -> None:
        while not stop.wait(POLL_SECONDS):
            self.poll()

    def start_thread(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve, args=(stop,), name="conveyor-control", daemon=True
        )
        thread.start()
        return thread

    def handle(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            name = str(message["command"])
            arguments = dict(message.get("arguments") or {})
            reply_id = message.get("reply_id")
            expired = float(message.get("expires", 0)) < time.time()
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("control: ignored a malformed command (%s)", exc)
            return
        if expired:
            return  # the client stopped waiting: do not act on it late
        answer = self._run(name, arguments)
        if reply_id:
            reply = json.dumps({"worker": self.hostname, "reply": answer}, default=repr)
            try:
                mailbox = mailbox_for(self.app.broker, self.app.coordinator)
                mailbox.answer(str(reply_id), reply.encode(), REPLY_TTL)
            except Exception as exc:
                logger.warning("control: could not answer %s (%s)", name, exc)
        if name == "shutdown":
            os.kill(os.getpid(), signal.SIGTERM)  # after answering: a warm shutdown

    def _run(self, name: str, arguments: dict[str, Any]) -> Any:
        handler = self.handlers.get(name)
        if handler is None:
            return {"error": f"unknown command {name!r}"}
        try:
            return handler(arguments)
        except (UnsupportedCommand, ValueError, KeyError, TypeError) as exc:
            return {"error": str(exc).strip("'\"")}
        except Exception as exc:
            logger.exception("control command %s failed", name)
            return {"error": f"{type(exc).__name__}: {exc}"}

    # inspect --------------------------------------------------------------------------
    def active(self) -> list[dict[str, Any]]:
        mailbox = mailbox_for(self.app.broker, self.app.coordinator)
        requests = []
        for task in self.view.running():
            body = _body_of(mailbox.held(task.consumer_id), task.tag)
            requests.append(self._request(body, task.tag, task, acknowledged=False))
        return requests

    def reserved(self) -> list[dict[str, Any]]:
        mailbox = mailbox_for(self.app.broker, self.app.coordinator)
        running = {task.tag for task in self.view.running()}
        requests = []
        for consumer_id in self.view.consumer_ids():
            for tag, body in mailbox.held(consumer_id):
                if tag not in running:
                    requests.append(self._request(body, tag, None, acknowledged=False))
        return requests

    def scheduled(self) -> list[dict[str, Any]]:
        """Celery's ``scheduled``: the ETA and countdown tasks waiting, each as
        ``{"eta", "priority", "request"}``. They wait in the broker, not in a worker
        (promise 3), so each queue's are listed by one worker: the first by name of the
        live workers consuming it. Over all workers, each task is listed once, as in
        Celery (where the one worker that prefetched it lists it)."""
        held = scheduled_messages(self.app.broker, self._queues_to_report(), SCHEDULED_LIMIT)
        if held is None:
            scheme = self.app.broker.url.split("://", 1)[0]
            raise UnsupportedCommand(
                f"the broker ({scheme}) cannot list the messages it holds for their ETA"
            )
        replies = []
        for message in held:
            request = self._request(message.body, "", None, acknowledged=False)
            request["delivery_info"]["routing_key"] = message.queue
            replies.append({
                "eta": datetime.fromtimestamp(message.due, UTC).isoformat(),
                "priority": message.priority,
                "request": request,
            })
        return replies

    def _queues_to_report(self) -> list[str]:
        """This worker's queues whose scheduled messages it reports: those of which it
        is the first live consumer by name (or that no listed worker consumes yet)."""
        try:
            workers = self.app.coordinator.workers()
        except Exception as exc:  # the registry is away: report them all (duplicates)
            logger.debug("control: could not read the registry (%s)", exc)
            workers = []
        mine = []
        for queue in self.worker.queues:
            consumers = [
                str(info.get("hostname"))
                for info in workers
                if queue in (info.get("queues") or ())
            ]
            if min([*consumers, self.hostname]) == self.hostname:
                mine.append(queue)
        return mine

    def query_task(self, arguments: dict[str, Any]) -> dict[str, Any]:
        wanted = set(arguments.get("ids") or ())
        found: dict[str, Any] = {}
        states = [("active", self.active()), ("reserved", self.reserved())]
        if isinstance(self.app.broker, ScheduledProbe):
            states.append(("scheduled", [item["request"] for item in self.scheduled()]))
        for state, requests in states:
            for request in requests:
                if request["id"] in wanted:
                    found[request["id"]] = [state, request]
        return found

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        broker_url = self.app.broker.url
        return {
            "hostname": self.hostname,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.worker.started_at, 3),
            "clock": time.time(),
            "sw_ver": __version__,
            "pool": self.view.pool_info(),
            "prefetch_count": self.worker.prefetch,
            "total": self.board.totals(),
            "broker": {"transport": broker_url.split("://", 1)[0]},
            "rusage": {
                "utime": usage.ru_utime + children.ru_utime,
                "stime": usage.ru_stime + children.ru_stime,
                "maxrss": usage.ru_maxrss,
            },
        }

    def _request(
        self, body: bytes | None, tag: str, task: RunningTask | None, acknowledged: bool
    ) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": task.task_id if task is not None else None,
            "hostname": self.hostname,
            "time_start": task.started if task is not None else None,
            "acknowledged": acknowledged,
            "worker_pid": task.pid if task is not None else None,
            "delivery_info": {"delivery_tag": tag},
        }
        if body is None:  # not readable from the store (AMQP: no leases): what is known
            if task is not None and task.name:
                info.update(name=task.name, type=task.name)
            return info
        try:
            envelope = decode_envelope(body, self.accept)
        except Exception:  # the worker will dead-letter it; show what is known
            return info
        info.update(
            id=envelope.id,
            name=envelope.task,
            type=envelope.task,
            args=envelope.args,
            kwargs=envelope.kwargs,
            retries=envelope.retries,
            eta=envelope.eta,
            expires=envelope.expires,
        )
        info["delivery_info"]["priority"] = envelope.priority
        return info

    # control --------------------------------------------------------------------------
    def shutdown(self, arguments: dict[str, Any]) -> dict[str, str]:
        logger.warning("shutdown requested by a control command")
        return {"ok": "shutting down"}

    def pool_grow(self, arguments: dict[str, Any]) -> dict[str, str]:
        n = _positive(arguments.get("n", 1))
        self.view.grow(n)
        return {"ok": f"pool will grow by {n}"}

    def pool_shrink(self, arguments: dict[str, Any]) -> dict[str, str]:
        n = _positive(arguments.get("n", 1))
        self.view.shrink(n)
        return {"ok": f"pool will shrink by {n}"}

    def add_consumer(self, arguments: dict[str, Any]) -> dict[str, str]:
        queue = str(arguments["queue"])
        if queue in self.worker.queues:
            return {"ok": f"already consuming from {queue!r}"}
        self.view.consume([*self.worker.queues, queue])
        return {"ok": f"add consumer {queue}"}

    def cancel_consumer(self, arguments: dict[str, Any]) -> dict[str, str]:
        queue = str(arguments["queue"])
        if queue not in self.worker.queues:
            return {"error": f"not consuming from {queue!r}"}
        remaining = [q for q in self.worker.queues if q != queue]
        if not remaining:
            return {"error": f"{queue!r} is this worker's last queue"}
        self.view.consume(remaining)
        return {"ok": f"no longer consuming from {queue}"}

    def time_limit(self, arguments: dict[str, Any]) -> dict[str, str]:
        name = str(arguments["task_name"])
        task = self.app.tasks.get(name)
        if task is None:
            return {"error": f"unknown task {name!r}"}
        task.soft_time_limit = _limit(arguments.get("soft"))
        task.time_limit = _limit(arguments.get("hard"))
        self.view.reload()
        return {"ok": "time limits set successfully"}


def _body_of(held: list[tuple[str, bytes]], tag: str) -> bytes | None:
    for held_tag, body in held:
        if held_tag == tag:
            return body
    return None


def _queue_info(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "routing_key": name,
        "exchange": {"name": name, "type": "direct"},
        "durable": True,
        "exclusive": False,
        "auto_delete": False,
        "no_ack": False,
    }


def _builtin(name: str) -> bool:
    return name.startswith("celery.") or name.startswith("conveyor.")


def _positive(value: Any) -> int:
    n = int(value)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return n


def _limit(value: Any) -> float | None:
    if value is None:
        return None
    seconds = float(value)
    if seconds < 0:
        raise ValueError(f"a time limit cannot be negative, got {seconds}")
    return seconds or None
