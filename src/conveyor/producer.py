"""The producer: the one place a message is built, routed, checked and sent.

Every way out goes through ``app.producer`` (dramatiq's ``send_with_options`` door):

    add.delay, apply_async, app.send_task, beat ticks   call()
    delay_many, a group's plain members                 bulk(), send_batch()
    Task.retry                                          retry()
    a chain's next step, callbacks, errbacks            call(), via Signature.apply_async
    a chord's join message                              prepare(): built and hooked when
                                                        the chord is sent; the store (or
                                                        the worker) queues it at the end
    conveyor dlq replay                                 replay()

On the way each message meets, in order: :meth:`Producer.envelope` (ids, parent and
root, priority, expiry, workflow placement), :meth:`Producer.queue_for` (the one
routing rule), the ``on_before_publish`` listeners (they may add headers: trace
context ...), the encoder (a ``TypeError`` names an argument that cannot travel;
``auth`` signs), the broker, and the ``on_task_sent`` listeners
(:mod:`conveyor.events`). With nobody listening, each hook costs a list check.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .events import BeforePublish, SendKind, TaskSent, dispatch
from .ids import new_task_id, new_task_ids
from .limits import call_key
from .message import Envelope, decode_envelope, encode_envelope, encode_envelopes
from .serializers import accepted
from .stores.aio import publish_async
from .task import current_request

if TYPE_CHECKING:
    from .app import Conveyor
    from .task import Context, Task

__all__ = ["Producer", "to_epoch"]

logger = logging.getLogger("conveyor.producer")


class Producer:
    """Builds, routes and sends every message of one app (``app.producer``)."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        # Live lists (subscribing later still counts): tested before any work is done.
        self._before = app.events.handlers("on_before_publish")
        self._sent = app.events.handlers("on_task_sent")

    # routing ----------------------------------------------------------------------------
    def route(self, name: str) -> str:
        """The queue ``task_routes`` gives task ``name`` (exact name, then glob, in each
        table in turn), else ``task_default_queue``."""
        values = self.app.conf.raw
        routes = values["task_routes"]
        if routes:
            for table in routes if isinstance(routes, (list, tuple)) else (routes,):
                queue = _match_route(table, name)
                if queue:
                    return queue
        default: str = values["task_default_queue"]
        return default

    def queue_for(self, task: Task[..., Any], queue: str | None = None) -> str:
        """The one routing rule: the queue given with the call, else the task's own
        ``queue`` option, else :meth:`route`."""
        return queue or task.queue or self.route(task.name)

    def serializer_for(self, task: Task[..., Any], serializer: str | None = None) -> str:
        chosen: str = serializer or task.serializer or self.app.conf.raw["task_serializer"]
        return chosen

    # building ---------------------------------------------------------------------------
    def envelope(
        self,
        task: Task[..., Any],
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        *,
        task_id: str | None = None,
        expires: datetime | float | None = None,
        priority: int | None = None,
        headers: Mapping[str, Any] | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        link: Any = None,
        link_error: Any = None,
        workflow: Mapping[str, Any] | None = None,
    ) -> Envelope:
        """A new call of ``task``. Sent from inside a running task, it is that task's
        child (same root, recorded in its ``children``); ``workflow`` holds the ids a
        chain, group or chord placed it with (canvas.py). Arguments that do not bind
        to the task's signature are a TypeError here (Celery's ``typing``)."""
        if task.typing:
            task.check_arguments(args or (), kwargs or {})
        now = time.time()
        parent = current_request()
        task_id = task_id or new_task_id()
        if priority is None:
            priority = task.priority
            if priority is None:
                priority = self.app.conf.raw["task_default_priority"]
        envelope = Envelope(
            id=task_id,
            task=task.name,
            args=list(args) if args else [],
            kwargs=dict(kwargs) if kwargs else {},
            expires=None if expires is None else to_epoch(expires, relative_to=now),
            priority=priority,
            root_id=(parent.root_id or parent.id) if parent and parent.id else task_id,
            parent_id=parent.id if parent else None,
            ignore_result=bool(ignore_result) if ignore_result is not None else False,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            sent_at=now,
            headers=dict(headers) if headers else {},
        )
        if parent is not None and parent.id is not None:
            if parent.children is None:
                parent.children = []
            parent.children.append(task_id)  # stored with its result: AsyncResult.children
        if link is not None or link_error is not None or workflow:
            _place(envelope, link, link_error, workflow)
        return envelope

    def envelopes(
        self, task: Task[..., Any], calls: Iterable[Sequence[Any]], priority: int | None = None
    ) -> list[Envelope]:
        """New calls of ``task``, one per argument tuple: what :meth:`envelope` makes of
        each, with what they share (the time, the parent, the priority, the checks'
        setup, the ids' random bytes) worked out once for the lot (``delay_many``)."""
        calls = list(calls)
        if task.typing:
            for args in calls:
                task.check_arguments(args or (), {})
        now = time.time()
        parent = current_request()
        if priority is None:
            priority = task.priority
            if priority is None:
                priority = self.app.conf.raw["task_default_priority"]
        ids = new_task_ids(len(calls))
        name = task.name
        # Sent from inside a task: every call is its child, in its workflow's tree;
        # else each call is a root of its own.
        parent_id = root_id = None
        if parent is not None and parent.id is not None:
            parent_id, root_id = parent.id, parent.root_id or parent.id
        envelopes = [
            Envelope(
                id=task_id,
                task=name,
                args=list(args) if args else [],
                priority=priority,
                root_id=root_id or task_id,
                parent_id=parent_id,
                sent_at=now,
            )
            for task_id, args in zip(ids, calls, strict=True)
        ]
        if parent is not None and parent_id is not None:
            if parent.children is None:
                parent.children = []
            parent.children.extend(ids)
        return envelopes

    def retry_envelope(
        self,
        task: Task[..., Any],
        request: Context,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Envelope:
        """The next attempt of the running ``request``: the same id, step and workflow,
        one more retry (``args``/``kwargs`` replace the arguments when given)."""
        assert request.id is not None
        return Envelope(
            id=request.id,
            task=task.name,
            args=list(request.args if args is None else args),
            kwargs=dict(request.kwargs if kwargs is None else kwargs),
            retries=request.retries + 1,
            expires=request.expires,
            priority=request.delivery_info.get("priority"),
            root_id=request.root_id,
            parent_id=request.parent_id,
            group_id=request.group,
            time_limit=request.time_limit,
            soft_time_limit=request.soft_time_limit,
            sent_at=time.time(),
            # A copy: a before-publish listener's headers must not change this attempt's.
            headers=dict(request.headers),
            # The next attempt is the same step of the same workflow.
            callbacks=request.callbacks,
            errbacks=request.errbacks,
            chord=request.chord,
        )

    # the doors ----------------------------------------------------------------------------
    def call(
        self,
        task: Task[..., Any],
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        **options: Any,
    ) -> str:
        """Send one call of ``task`` (``options`` are those of ``apply_async``: countdown,
        eta, queue, serializer, idempotency_key, idempotency_window, task_id, expires,
        priority, headers, ignore_result, time_limit, soft_time_limit, link, link_error,
        workflow). Returns the id to follow: the first send's, when an idempotency key
        finds one."""
        planned = self._plan(task, args, kwargs, **options)
        if planned.unique is not None:
            return self.send_unique(
                planned.envelope,
                planned.queue,
                planned.serializer,
                key=planned.unique[0],
                ttl=planned.unique[1],
                countdown=planned.countdown,
                eta=planned.eta,
                kind=planned.kind,
            )
        self.send(
            planned.envelope,
            planned.queue,
            planned.serializer,
            countdown=planned.countdown,
            eta=planned.eta,
            kind=planned.kind,
        )
        return planned.envelope.id

    def delay(
        self, task: Task[..., Any], args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
    ) -> str:
        """:meth:`call` with no options (``Task.delay``): the same message, hooks and
        publish, without passing a dozen ``None`` options through :meth:`_plan`."""
        if task.idempotency_key:
            return self.call(task, args, kwargs)
        envelope = self.envelope(task, args, kwargs)
        raw = self.app.conf.raw
        queue = task.queue or self.route(task.name)
        self.send(envelope, queue, task.serializer or raw["task_serializer"])
        return envelope.id

    async def acall(
        self,
        task: Task[..., Any],
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        **options: Any,
    ) -> str:
        """:meth:`call` without blocking the running event loop (``aapply_async``): the
        message is built and hooked here, as for every send (CPU only), and published by
        the transport's async client (stores/aio.py), or on a thread for a store without
        one. An idempotent send (a claim in the coordinator, then the publish) runs on a
        thread."""
        planned = self._plan(task, args, kwargs, **options)
        if planned.unique is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                None,
                functools.partial(
                    self.send_unique,
                    planned.envelope,
                    planned.queue,
                    planned.serializer,
                    key=planned.unique[0],
                    ttl=planned.unique[1],
                    countdown=planned.countdown,
                    eta=planned.eta,
                    kind=planned.kind,
                ),
            )
        envelope, queue = planned.envelope, planned.queue
        body = self._hooked(envelope, queue, planned.serializer, planned.kind)
        await publish_async(
            self.app.broker,
            queue,
            (body,),
            priority=envelope.priority or 0,
            countdown=planned.countdown,
            eta=planned.eta,
        )
        if self._sent:
            self._announce(envelope, queue, planned.kind, planned.countdown, planned.eta)
        return envelope.id

    def _plan(
        self,
        task: Task[..., Any],
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        *,
        countdown: float | None = None,
        eta: datetime | float | None = None,
        queue: str | None = None,
        serializer: str | None = None,
        idempotency_key: str | None = None,
        idempotency_window: float | None = None,
        task_id: str | None = None,
        expires: datetime | float | None = None,
        priority: int | None = None,
        headers: Mapping[str, Any] | None = None,
        ignore_result: bool | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        link: Any = None,
        link_error: Any = None,
        workflow: Mapping[str, Any] | None = None,
    ) -> _Planned:
        """Everything about one call but the publish: the envelope, where it goes, how it
        is encoded, when it is due, and its idempotency claim."""
        envelope = self.envelope(
            task,
            args,
            kwargs,
            task_id=task_id,
            expires=expires,
            priority=priority,
            headers=headers,
            ignore_result=ignore_result,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            link=link,
            link_error=link_error,
            workflow=workflow,
        )
        unique: tuple[str, float] | None = None
        if idempotency_key is None and task.idempotency_key:
            idempotency_key = call_key(task, task.idempotency_key, envelope.args, envelope.kwargs)
        if idempotency_key is not None:
            window = idempotency_window or task.idempotency_window
            ttl = float(window or self.app.conf.raw["task_idempotency_window"])
            unique = (f"{task.name}:{idempotency_key}", ttl)
        return _Planned(
            envelope,
            self.queue_for(task, queue),
            self.serializer_for(task, serializer),
            "workflow" if workflow else "call",
            countdown,
            to_epoch(eta),
            unique,
        )

    def bulk(
        self,
        task: Task[..., Any],
        calls: Iterable[Sequence[Any]],
        *,
        queue: str | None = None,
        priority: int | None = None,
    ) -> list[Envelope]:
        """Send many calls of ``task`` in one publish (``delay_many``)."""
        envelopes = self.envelopes(task, calls, priority)
        if envelopes:
            self.send_batch(
                envelopes,
                self.queue_for(task, queue),
                self.serializer_for(task),
                priority=envelopes[0].priority or 0,
            )
        return envelopes

    def retry(
        self,
        task: Task[..., Any],
        request: Context,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        *,
        countdown: float | None,
        eta: datetime | float | None,
        queue: str | None = None,
    ) -> None:
        """Send the next attempt of ``request``, held in the broker until due, to the
        queue it came from (unless ``queue`` says otherwise)."""
        envelope = self.retry_envelope(task, request, args, kwargs)
        self.send(
            envelope,
            self.queue_for(task, queue or request.delivery_info.get("queue")),
            self.serializer_for(task),
            countdown=countdown,
            eta=to_epoch(eta),
            kind="retry",
        )

    # sending built envelopes ------------------------------------------------------------
    def encode(self, envelope: Envelope, serializer: str) -> bytes:
        """The message's bytes. ``TypeError`` names an argument that cannot travel;
        ``ValueError`` when it is over ``broker_max_message_size``."""
        return encode_envelope(envelope, serializer, self.app.conf.raw["broker_max_message_size"])

    def send(
        self,
        envelope: Envelope,
        queue: str,
        serializer: str,
        *,
        countdown: float | None = None,
        eta: float | None = None,
        kind: SendKind = "call",
    ) -> None:
        """Hook, encode and publish one envelope, held until ``countdown`` seconds from
        now or the epoch time ``eta`` when given."""
        body = self._hooked(envelope, queue, serializer, kind)
        self.app.broker.publish(
            queue, (body,), priority=envelope.priority or 0, countdown=countdown, eta=eta
        )
        if self._sent:
            self._announce(envelope, queue, kind, countdown, eta)

    def _hooked(self, envelope: Envelope, queue: str, serializer: str, kind: SendKind) -> bytes:
        """The before-publish listeners, then the message's bytes."""
        if self._before:
            dispatch(self._before, BeforePublish(envelope=envelope, queue=queue, kind=kind))
        return self.encode(envelope, serializer)

    def send_unique(
        self,
        envelope: Envelope,
        queue: str,
        serializer: str,
        *,
        key: str,
        ttl: float,
        countdown: float | None = None,
        eta: float | None = None,
        kind: SendKind = "call",
    ) -> str:
        """:meth:`send`, unless ``key`` was claimed in the last ``ttl`` seconds (the
        claim and the publish are one step in the broker). Returns the id that holds
        the key: this envelope's when it was sent, else the earlier send's."""
        if self._before:
            dispatch(self._before, BeforePublish(envelope=envelope, queue=queue, kind=kind))
        body = self.encode(envelope, serializer)
        app = self.app
        first = app.coordinator.publish_unique(
            app.broker,
            queue,
            body,
            key=key,
            task_id=envelope.id,
            ttl=ttl,
            priority=envelope.priority or 0,
            countdown=countdown,
            eta=eta,
        )
        if first is not None:
            return first
        if self._sent:
            self._announce(envelope, queue, kind, countdown, eta)
        return envelope.id

    def send_batch(
        self,
        envelopes: Sequence[Envelope],
        queue: str,
        serializer: str,
        *,
        priority: int = 0,
        kind: SendKind = "bulk",
    ) -> None:
        """Hook, encode and publish many envelopes to one queue in one publish."""
        if self._before:
            for envelope in envelopes:
                dispatch(self._before, BeforePublish(envelope=envelope, queue=queue, kind=kind))
        limit = self.app.conf.raw["broker_max_message_size"]
        bodies = encode_envelopes(envelopes, serializer, limit)
        self.app.broker.publish(queue, bodies, priority=priority)
        if self._sent:
            for envelope in envelopes:
                self._announce(envelope, queue, kind, None, None)

    def prepare(
        self, envelope: Envelope, queue: str, serializer: str, kind: SendKind = "workflow"
    ) -> bytes:
        """Hook and encode a message that something else queues later (a chord's join
        message, queued by the result store when the header completes); it counts as
        sent now, so ``on_task_sent`` hears of it once, whoever queues it."""
        if self._before:
            dispatch(self._before, BeforePublish(envelope=envelope, queue=queue, kind=kind))
        body = self.encode(envelope, serializer)
        if self._sent:
            self._announce(envelope, queue, kind, None, None)
        return body

    def publish_prepared(self, queue: str, body: bytes, priority: int = 0) -> None:
        """Queue a message :meth:`prepare` built (already hooked and announced)."""
        self.app.broker.publish(queue, (body,), priority=priority)

    def replay(self, letter_ids: Sequence[str] | None = None) -> int:
        """Send dead letters back to their queue (all when None), oldest first, and
        remove them; returns how many. A letter goes back byte for byte (a signed one
        stays valid): ``on_before_publish`` cannot change it and is not called, and
        ``on_task_sent`` hears of it when it decodes (one that does not is still sent:
        the worker dead-letters it again, with the reason)."""
        kept, transport = self.app.coordinator, self.app.broker
        letters = (
            kept.dead_letters(limit=1_000_000)
            if letter_ids is None
            else [d for d in map(kept.dead_letter_by_id, letter_ids) if d is not None]
        )
        for letter in reversed(letters):  # oldest first, as they first arrived
            transport.publish(letter.queue, (letter.body,))
            kept.remove_dead_letters([letter.id])
            if self._sent:
                self._announce_body(letter.body, letter.queue, "replay")
        return len(letters)

    # after publish --------------------------------------------------------------------------
    def _announce(
        self,
        envelope: Envelope,
        queue: str,
        kind: SendKind,
        countdown: float | None,
        eta: float | None,
    ) -> None:
        if eta is None and countdown is not None:
            eta = envelope.sent_at + countdown
        dispatch(
            self._sent,
            TaskSent(
                timestamp=time.time(),
                uuid=envelope.id,
                name=envelope.task,
                args=envelope.args,
                kwargs=envelope.kwargs,
                retries=envelope.retries,
                eta=eta if eta is not None else envelope.eta,
                expires=envelope.expires,
                queue=queue,
                priority=envelope.priority or 0,
                root_id=envelope.root_id,
                parent_id=envelope.parent_id,
                group_id=envelope.group_id,
                headers=envelope.headers,
                kind=kind,
                envelope=envelope,
            ),
        )

    def _announce_body(self, body: bytes, queue: str, kind: SendKind) -> None:
        try:
            envelope = decode_envelope(body, accepted(self.app.conf.accept_content))
        except Exception as exc:  # any reason: it was dead-lettered for one
            logger.debug("replayed message not announced (%s): %s", queue, exc)
            return
        self._announce(envelope, queue, kind, None, None)


@dataclass(slots=True)
class _Planned:
    """One call of a task, ready to publish (Producer._plan)."""

    envelope: Envelope
    queue: str
    serializer: str
    kind: SendKind
    countdown: float | None
    eta: float | None
    unique: tuple[str, float] | None  # (idempotency key, window in seconds)


# --- helpers --------------------------------------------------------------------------


def _place(
    envelope: Envelope, link: Any, link_error: Any, workflow: Mapping[str, Any] | None
) -> None:
    """Where a call sits in a workflow (canvas/): its callbacks, and the ids that
    place it (set by a chain, group or chord, and by a worker sending a callback)."""
    if link is not None or link_error is not None:
        from .canvas import signature_dicts

        envelope.callbacks = signature_dicts(link)
        envelope.errbacks = signature_dicts(link_error)
    if workflow:
        envelope.root_id = workflow.get("root_id") or envelope.root_id
        envelope.parent_id = workflow.get("parent_id") or envelope.parent_id
        envelope.group_id = workflow.get("group_id")
        envelope.chord = workflow.get("chord")


def to_epoch(value: datetime | float | None, relative_to: float | None = None) -> float | None:
    """A datetime (naive means UTC, as with Celery's enable_utc) or a number of seconds
    (relative to ``relative_to`` when given, else already an epoch time) as epoch."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    if relative_to is not None:
        return relative_to + float(value)
    return float(value)


def _match_route(table: Any, name: str) -> str | None:
    if callable(table):
        found = table(name, None, None, None)
        return _queue_of(found)
    if isinstance(table, Mapping):
        if name in table:
            return _queue_of(table[name])
        for pattern, target in table.items():
            if fnmatch.fnmatchcase(name, pattern):
                return _queue_of(target)
    return None


def _queue_of(target: Any) -> str | None:
    if target is None:
        return None
    if isinstance(target, str):
        return target
    queue = target.get("queue")
    return str(queue) if queue else None
