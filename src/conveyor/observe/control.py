"""``app.control``: inspect and steer running workers, in Celery's shapes.

Two kinds of command live here:

- stored in the broker, so they reach every worker including ones that start later:
  ``revoke`` and ``rate_limit`` (they hold across the cluster, not per worker);
- sent to the live workers through the store's control mailbox (stores/mailbox.py):
  ``inspect()`` and ``broadcast`` with ``ping``, ``shutdown``, ``pool_grow``,
  ``pool_shrink``, ``add_consumer``, ``cancel_consumer``, ``time_limit``. Each live
  worker answers within the timeout (default 1 s); a dead worker is simply absent.
"""

from __future__ import annotations

import json
import signal as signal_module
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from ..limits import parse_rate
from ..stores.mailbox import mailbox_for

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["Control", "Inspect", "encode_command", "parse_destination"]

# How long an answer waits for a client that may already have given up.
REPLY_TTL = 10.0

Destination = str | Sequence[str] | None


def parse_destination(destination: Destination) -> list[str] | None:
    """Celery takes a list of worker names; ``"w1@h,w2@h"`` (the CLI's form) too."""
    if destination is None:
        return None
    names = destination.split(",") if isinstance(destination, str) else list(destination)
    cleaned = [name.strip() for name in names if name.strip()]
    return cleaned or None


def encode_command(
    command: str, arguments: dict[str, Any], reply_id: str | None, timeout: float
) -> bytes:
    """A command as a worker reads it; it expires with the client's wait, so a worker
    that comes back later does not act on a request nobody waits for any more."""
    return json.dumps(
        {
            "command": command,
            "arguments": arguments,
            "reply_id": reply_id,
            "expires": time.time() + max(timeout, 1.0),
        }
    ).encode()


class Control:
    def __init__(self, app: Conveyor) -> None:
        self.app = app

    # sent to live workers ---------------------------------------------------------------
    def inspect(
        self, destination: Destination = None, timeout: float = 1.0, **_: Any
    ) -> Inspect:
        """``app.control.inspect().active()`` -> ``{worker_name: [task, ...]}``."""
        return Inspect(self, destination, timeout)

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Destination = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        **_: Any,
    ) -> list[dict[str, Any]] | None:
        """Send ``command`` to the live workers (those named in ``destination``, else
        all). With ``reply``, wait up to ``timeout`` seconds and return Celery's shape, a
        list of ``{worker_name: answer}``; ``limit`` stops at that many answers."""
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, got {timeout}")
        broker = self.app.broker
        wanted = parse_destination(destination)
        alive = [str(w["hostname"]) for w in self.app.coordinator.workers() if "hostname" in w]
        targets = [name for name in alive if wanted is None or name in wanted]
        if not targets:
            return [] if reply else None
        mailbox = mailbox_for(broker, self.app.coordinator)
        reply_id = uuid.uuid4().hex if reply else None
        mailbox.post(targets, encode_command(command, arguments or {}, reply_id, timeout), timeout)
        if reply_id is None:
            return None
        expected = min(len(targets), limit) if limit else len(targets)
        answers = []
        for raw in mailbox.collect(reply_id, expected, timeout):
            decoded = json.loads(raw)
            answers.append({decoded["worker"]: decoded["reply"]})
        return answers

    def ping(
        self, destination: Destination = None, timeout: float = 1.0, **kwargs: Any
    ) -> list[dict[str, Any]]:
        return self.broadcast("ping", destination=destination, reply=True, timeout=timeout) or []

    def shutdown(
        self, destination: Destination = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Warm shutdown of workers: running tasks finish, unstarted ones go back."""
        return self.broadcast("shutdown", destination=destination, **kwargs)

    def pool_grow(
        self, n: int = 1, destination: Destination = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Add ``n`` processes (prefork) or threads to each pool that can grow."""
        return self.broadcast("pool_grow", {"n": int(n)}, destination=destination, **kwargs)

    def pool_shrink(
        self, n: int = 1, destination: Destination = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Stop ``n`` processes of each prefork pool (after their current task)."""
        return self.broadcast("pool_shrink", {"n": int(n)}, destination=destination, **kwargs)

    def add_consumer(
        self, queue: str, exchange: str | None = None, exchange_type: str = "direct",
        routing_key: str | None = None, options: dict[str, Any] | None = None,
        destination: Destination = None, **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Make workers consume ``queue`` too (exchange arguments are AMQP's; ignored)."""
        return self.broadcast("add_consumer", {"queue": queue}, destination=destination, **kwargs)

    def cancel_consumer(
        self, queue: str, destination: Destination = None, **kwargs: Any
    ) -> list[dict[str, Any]] | None:
        """Make workers stop consuming ``queue``."""
        return self.broadcast(
            "cancel_consumer", {"queue": queue}, destination=destination, **kwargs
        )

    def time_limit(
        self, task_name: str, soft: float | None = None, hard: float | None = None,
        destination: Destination = None, **kwargs: Any,
    ) -> list[dict[str, Any]] | None:
        """Change a task's soft and hard time limits on running workers."""
        arguments = {"task_name": task_name, "soft": soft, "hard": hard}
        return self.broadcast("time_limit", arguments, destination=destination, **kwargs)

    # stored in the broker ---------------------------------------------------------------
    def purge(self) -> int:
        """Delete every waiting message of every known queue; returns how many."""
        broker = self.app.broker
        return broker.purge([q.name for q in broker.queues()])

    def revoke(
        self,
        task_id: str | Sequence[str],
        destination: object = None,  # accepted for Celery compatibility: all workers obey
        terminate: bool = False,
        signal: str | int = "SIGTERM",
        **_: Any,
    ) -> None:
        """Revoke tasks: a worker that receives one does not run it (it is REVOKED).
        With ``terminate`` a task already running is stopped with ``signal``.

        Revocations live in the broker for ``worker_revoke_expires`` seconds (3 h), so
        they reach every worker, including ones started later, and survive restarts.
        """
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        name = _signal_name(signal) if terminate else None
        ttl = float(self.app.conf.worker_revoke_expires)
        self.app.coordinator.revoke(ids, ttl, terminate=name)

    def rate_limit(
        self,
        task_name: str,
        rate_limit: str | float | None,
        destination: object = None,  # accepted for Celery compatibility: all workers obey
        **_: Any,
    ) -> None:
        """Change a task's rate limit at run time, for all workers together:
        ``app.control.rate_limit("tasks.add", "5/s")``; ``"0"`` lifts the limit; None
        goes back to the limit in the task's code.

        Stored in the broker; every worker reads it within a second (worker/admission.py).
        """
        if rate_limit is None:
            self.app.coordinator.set_rate_limit(task_name, None)
            return
        parse_rate(rate_limit)  # refuse a bad rate here, not in every worker
        self.app.coordinator.set_rate_limit(task_name, str(rate_limit))


class Inspect:
    """``app.control.inspect(destination=..., timeout=...)``: each method returns
    ``{worker_name: answer}``, or None when no worker answered (as Celery does); with a
    single worker name as ``destination``, that worker's answer alone."""

    def __init__(self, control: Control, destination: Destination, timeout: float) -> None:
        self.control = control
        self.destination = destination
        self.timeout = timeout

    def _request(self, command: str, **arguments: Any) -> Any:
        answers = self.control.broadcast(
            command, arguments, destination=self.destination, reply=True, timeout=self.timeout
        )
        if not answers:
            return None
        by_worker: dict[str, Any] = {}
        for answer in answers:
            by_worker.update(answer)
        if isinstance(self.destination, str) and "," not in self.destination:
            return by_worker.get(self.destination)
        return by_worker

    def active(self, safe: bool | None = None) -> Any:
        """Tasks running now."""
        return self._request("active")

    def reserved(self, safe: bool | None = None) -> Any:
        """Tasks leased by the worker (prefetched) that have not started."""
        return self._request("reserved")

    def scheduled(self, safe: bool | None = None) -> Any:
        """Tasks with an ETA the worker holds: always empty lists here, since ETA tasks
        wait in the broker, not in worker memory (see ``conveyor status``)."""
        return self._request("scheduled")

    def registered(self, *taskinfoitems: str) -> Any:
        """Task names each worker knows."""
        return self._request("registered", taskinfoitems=list(taskinfoitems))

    registered_tasks = registered

    def stats(self) -> Any:
        """Pool, uptime, totals by task name, resource usage."""
        return self._request("stats")

    def ping(self) -> Any:
        return self._request("ping")

    def active_queues(self) -> Any:
        """The queues each worker consumes."""
        return self._request("active_queues")

    def revoked(self) -> Any:
        """Task ids the worker will not run."""
        return self._request("revoked")

    def query_task(self, *ids: str | Sequence[str]) -> Any:
        """``{worker: {task_id: [state, request]}}`` for the ids a worker has active or
        reserved."""
        flat: list[str] = []
        for item in ids:
            flat.extend([item] if isinstance(item, str) else list(item))
        return self._request("query_task", ids=flat)


def _signal_name(signal: str | int) -> str:
    if isinstance(signal, int):
        return signal_module.Signals(signal).name
    name = signal.upper()
    if not name.startswith("SIG"):
        name = f"SIG{name}"
    if not hasattr(signal_module, name):
        raise ConfigurationError(f"unknown signal {signal!r}: expected e.g. SIGTERM or SIGKILL")
    return name
