"""Typed events: what happens to tasks and workers, and the listeners that hear it.

Each event is a dataclass named for what happened (slots, not frozen: a frozen one
costs three times as much to build, paid on every task someone listens to; listeners
share one event, so treat it as read-only). The producer emits the
publish events (:mod:`conveyor.producer`), the worker the rest
(:mod:`conveyor.worker.hooks`): one place on each side. Celery's signals
(:mod:`conveyor.signals`), the worker's log lines, and later metrics, tracing and the
event stream are all listeners.

A listener is any object with methods named ``on_<event>``, each taking the event:

    class Audit:
        def on_task_failed(self, event: TaskFailed) -> None:
            print(event.uuid, event.exception)

    app.events.subscribe(Audit())

``subscribe`` checks the listener at once: an ``on_*`` method that names no event (a
typo such as ``on_task_sucseeded``) or that does not take exactly the event is a
``TypeError`` there, never a method silently not called. Subclass :class:`Listener` to
have mypy check the methods too. A listener that raises is logged and the other
listeners, and the task, go on (dramatiq's middleware rule). When nobody listens to an
event, emitting it costs a list check: no event object is built.

``on_before_publish`` is the one hook that may change what is sent: it gets a
:class:`BeforePublish` and may add entries to its ``headers`` (trace context, a
signature); ``on_task_sent`` is its after-publish pair.

``to_dict()`` gives an event as Celery's event stream carries it: Celery's type and
field names, plain values, arguments and results as ``repr`` strings.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from .message import Envelope
    from .task import Context

__all__ = [
    "HANDLERS",
    "BeforePublish",
    "Channel",
    "Event",
    "EventBus",
    "Listener",
    "SendKind",
    "TaskFailed",
    "TaskReceived",
    "TaskRejected",
    "TaskRetried",
    "TaskRevoked",
    "TaskSent",
    "TaskStarted",
    "TaskSucceeded",
    "WorkerEvent",
    "WorkerHeartbeat",
    "WorkerOffline",
    "WorkerOnline",
    "dispatch",
    "subscribe_everywhere",
]

logger = logging.getLogger("conveyor.events")

Handler = Callable[[Any], None]

SendKind = Literal["call", "bulk", "retry", "workflow", "replay"]
"""Which door a message left by: ``call`` (delay, apply_async, send_task, beat),
``bulk`` (delay_many, a group's members), ``retry``, ``workflow`` (a chain's next step,
a callback or errback, a chord's body) or ``replay`` (a dead letter sent again)."""

# How much of an argument list or a result an event's dict keeps (Celery cuts at 1024).
REPR_LIMIT = 1024


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


# --- the events -----------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Event:
    """Something that happened, at ``timestamp`` (epoch seconds)."""

    type: ClassVar[str] = "event"
    # Fields holding live objects for in-process listeners, left out of to_dict().
    live: ClassVar[frozenset[str]] = frozenset({"request", "envelope"})

    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        """The event as Celery's event stream carries it (plain values, reprs)."""
        out: dict[str, Any] = {"type": self.type}
        for name in _plain_fields(type(self)):
            out[name] = getattr(self, name)
        return out


# Field names per event class for to_dict(): dataclasses.fields() costs ~1.5 µs a call,
# paid for every event a worker with -E stores.
_PLAIN_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def _plain_fields(cls: type[Event]) -> tuple[str, ...]:
    names = _PLAIN_FIELDS.get(cls)
    if names is None:
        names = _PLAIN_FIELDS[cls] = tuple(
            spec.name for spec in fields(cls) if spec.name not in cls.live
        )
    return names


@dataclass(slots=True, kw_only=True)
class TaskSent(Event):
    """A message left through the producer (Celery's ``task-sent``)."""

    type: ClassVar[str] = "task-sent"

    uuid: str
    name: str
    args: Sequence[Any]
    kwargs: dict[str, Any]
    retries: int
    eta: float | None
    expires: float | None
    queue: str
    priority: int
    root_id: str | None
    parent_id: str | None
    group_id: str | None
    headers: dict[str, Any]
    kind: SendKind
    envelope: Envelope = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = Event.to_dict(self)
        out.update(args=_short(self.args), kwargs=_short(self.kwargs), routing_key=self.queue)
        out["exchange"] = ""
        return out


@dataclass(slots=True, kw_only=True)
class BeforePublish:
    """The hook before a message is encoded and sent (``on_before_publish``): a
    listener may add or change ``headers``; every other field is for reading."""

    envelope: Envelope
    queue: str
    kind: SendKind

    @property
    def headers(self) -> dict[str, Any]:
        """The message's own headers: what is put here travels with it."""
        return self.envelope.headers


@dataclass(slots=True, kw_only=True)
class _TaskEvent(Event):
    uuid: str
    name: str
    hostname: str
    request: Context = field(repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class TaskReceived(_TaskEvent):
    """A worker took the message and will run it (its checks passed)."""

    type: ClassVar[str] = "task-received"

    args: Sequence[Any]
    kwargs: dict[str, Any]
    retries: int
    eta: float | None
    expires: float | None
    queue: str | None
    root_id: str | None
    parent_id: str | None
    # Where it sits in a workflow beyond parent and root: the group it is a member of,
    # and the chord whose header it counts in, or that it joins when it is the chord's
    # join task (a dashboard draws the chord from a header task's page with them).
    group_id: str | None = None
    chord_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = Event.to_dict(self)
        out.update(args=_short(self.args), kwargs=_short(self.kwargs))
        return out


@dataclass(slots=True, kw_only=True)
class TaskStarted(_TaskEvent):
    """The task body is about to run in process ``pid``."""

    type: ClassVar[str] = "task-started"

    args: Sequence[Any]
    kwargs: dict[str, Any]
    pid: int

    def to_dict(self) -> dict[str, Any]:
        out = Event.to_dict(self)
        out.update(args=_short(self.args), kwargs=_short(self.kwargs))
        return out


@dataclass(slots=True, kw_only=True)
class TaskSucceeded(_TaskEvent):
    """The task returned ``result`` after ``runtime`` seconds."""

    type: ClassVar[str] = "task-succeeded"

    result: Any
    runtime: float

    def to_dict(self) -> dict[str, Any]:
        out = Event.to_dict(self)
        out["result"] = _short(self.result)
        return out


@dataclass(slots=True, kw_only=True)
class TaskFailed(_TaskEvent):
    """The task raised ``exception`` and will not be retried."""

    type: ClassVar[str] = "task-failed"

    exception: BaseException
    traceback: str | None
    runtime: float | None

    def to_dict(self) -> dict[str, Any]:
        out = Event.to_dict(self)
        out["exception"] = _short(self.exception)
        return out


@dataclass(slots=True, kw_only=True)
class TaskRetried(_TaskEvent):
    """The task asked to run again later (``Task.retry`` or ``autoretry_for``)."""

    type: ClassVar[str] = "task-retried"

    reason: str
    exception: BaseException | None
    traceback: str | None

    def to_dict(self) -> dict[str, Any]:
        out = Event.to_dict(self)
        out["exception"] = _short(self.exception) if self.exception is not None else None
        return out


@dataclass(slots=True, kw_only=True)
class TaskRevoked(_TaskEvent):
    """The task did not run, or was stopped: revoked, expired or terminated."""

    type: ClassVar[str] = "task-revoked"

    terminated: bool
    expired: bool
    signum: int | None


@dataclass(slots=True, kw_only=True)
class TaskRejected(Event):
    """The message was dead-lettered with ``reason``. ``uuid``, ``name`` and ``request``
    are None when it could not even be decoded."""

    type: ClassVar[str] = "task-rejected"

    uuid: str | None
    name: str | None
    hostname: str
    reason: str
    requeue: bool = False
    request: Context | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True, kw_only=True)
class WorkerEvent(Event):
    """A worker's life: ``info`` holds its pool, concurrency, queues and start time."""

    hostname: str
    pid: int
    freq: float  # seconds between heartbeats
    sw_ident: str = "conveyor"
    sw_ver: str = ""
    sw_sys: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class WorkerOnline(WorkerEvent):
    type: ClassVar[str] = "worker-online"


@dataclass(slots=True, kw_only=True)
class WorkerHeartbeat(WorkerEvent):
    type: ClassVar[str] = "worker-heartbeat"


@dataclass(slots=True, kw_only=True)
class WorkerOffline(WorkerEvent):
    type: ClassVar[str] = "worker-offline"


HANDLERS: dict[str, type[Any]] = {
    "on_before_publish": BeforePublish,
    "on_task_sent": TaskSent,
    "on_task_received": TaskReceived,
    "on_task_started": TaskStarted,
    "on_task_succeeded": TaskSucceeded,
    "on_task_failed": TaskFailed,
    "on_task_retried": TaskRetried,
    "on_task_revoked": TaskRevoked,
    "on_task_rejected": TaskRejected,
    "on_worker_online": WorkerOnline,
    "on_worker_heartbeat": WorkerHeartbeat,
    "on_worker_offline": WorkerOffline,
}
"""Every listener method name, and the event it receives."""


class Listener:
    """An optional base for listeners, so mypy checks each method's event type. Its
    methods do nothing; ``subscribe`` registers only those a subclass overrides."""

    def on_before_publish(self, event: BeforePublish) -> None: ...
    def on_task_sent(self, event: TaskSent) -> None: ...
    def on_task_received(self, event: TaskReceived) -> None: ...
    def on_task_started(self, event: TaskStarted) -> None: ...
    def on_task_succeeded(self, event: TaskSucceeded) -> None: ...
    def on_task_failed(self, event: TaskFailed) -> None: ...
    def on_task_retried(self, event: TaskRetried) -> None: ...
    def on_task_revoked(self, event: TaskRevoked) -> None: ...
    def on_task_rejected(self, event: TaskRejected) -> None: ...
    def on_worker_online(self, event: WorkerOnline) -> None: ...
    def on_worker_heartbeat(self, event: WorkerHeartbeat) -> None: ...
    def on_worker_offline(self, event: WorkerOffline) -> None: ...


# --- delivering them ------------------------------------------------------------------


def dispatch(handlers: Sequence[Handler], event: Any) -> None:
    """Call each handler with ``event``; one that raises is logged, the rest still run."""
    for handler in handlers:
        try:
            handler(event)
        except Exception:
            logger.exception("event listener %r failed on %s", handler, type(event).__name__)


class EventBus:
    """The listeners of one app (``app.events``) or one worker (``worker.hooks.local``)."""

    def __init__(self, app: Any = None) -> None:
        self.app = app
        # One list per method name, changed in place, so an emitter may keep the list.
        self._handlers: dict[str, list[Handler]] = {name: [] for name in HANDLERS}
        self._listeners: list[object] = []
        self._lock = threading.Lock()
        if app is not None:
            with _standing_lock:
                _buses.add(self)
                standing = list(_standing)
            for factory in standing:
                self.subscribe(factory(app))

    def subscribe(self, listener: object) -> object:
        """Add a listener (see the module docstring); returns it. ``TypeError`` when a
        method is misnamed or does not take one event, or when it listens to nothing."""
        methods = listener_methods(listener)
        with self._lock:
            if any(known is listener for known in self._listeners):
                return listener
            self._listeners.append(listener)
            for name, method in methods.items():
                self._handlers[name].append(method)
        return listener

    def unsubscribe(self, listener: object) -> None:
        with self._lock:
            self._listeners = [known for known in self._listeners if known is not listener]
            for handlers in self._handlers.values():
                handlers[:] = [h for h in handlers if getattr(h, "__self__", None) is not listener]

    @property
    def listeners(self) -> list[object]:
        return list(self._listeners)

    def handlers(self, name: str) -> list[Handler]:
        """The live list of handlers of ``name`` (e.g. ``"on_task_sent"``): emitters keep
        it and test it before building an event."""
        return self._handlers[name]

    def emit(self, event: Event | BeforePublish) -> None:
        """Deliver ``event`` to this bus's listeners of its type."""
        dispatch(self._handlers[_handler_name(type(event))], event)


class Channel:
    """One event's handlers on two buses (a worker's own, then its app's), as the
    worker's emitter tests and sends it."""

    __slots__ = ("_first", "_second")

    def __init__(self, name: str, first: EventBus, second: EventBus) -> None:
        self._first = first.handlers(name)
        self._second = second.handlers(name)

    def __bool__(self) -> bool:
        return bool(self._first or self._second)

    def send(self, event: Event) -> None:
        dispatch(self._first, event)
        dispatch(self._second, event)


# Listeners every app gets, now and later: Celery's signals, once a receiver connects.
_standing: list[Callable[[Any], object]] = []
_standing_lock = threading.Lock()
_buses: weakref.WeakSet[EventBus] = weakref.WeakSet()


def subscribe_everywhere(factory: Callable[[Any], object]) -> None:
    """Subscribe ``factory(app)`` to the bus of every app, those made later included
    (once per factory)."""
    with _standing_lock:
        if factory in _standing:
            return
        _standing.append(factory)
        buses = list(_buses)
    for bus in buses:
        bus.subscribe(factory(bus.app))


# --- the check at subscribe -------------------------------------------------------------


def listener_methods(listener: object) -> dict[str, Handler]:
    """The event methods of ``listener`` by name, checked (see the module docstring)."""
    found: dict[str, Handler] = {}
    for attribute in dir(listener):
        if not attribute.startswith("on_"):
            continue
        where = f"{type(listener).__qualname__}.{attribute}"
        if attribute not in HANDLERS:
            hint = _did_you_mean(attribute)
            raise TypeError(f"{where}: there is no event {attribute[3:]!r}{hint}")
        method = getattr(listener, attribute)
        if not callable(method):
            raise TypeError(f"{where} is not callable")
        if getattr(type(listener), attribute, None) is getattr(Listener, attribute):
            continue  # Listener's no-op, not overridden
        _check_takes_one(where, method)
        found[attribute] = method
    if not found:
        raise TypeError(
            f"{type(listener).__qualname__} listens to no event: give it one of "
            f"{', '.join(HANDLERS)}"
        )
    return found


def _check_takes_one(where: str, method: Handler) -> None:
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to read
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(f"{where}{signature} must take one argument, the event") from None


def _did_you_mean(attribute: str) -> str:
    close = difflib.get_close_matches(attribute, HANDLERS, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(HANDLERS)})"


_NAMES = {cls: name for name, cls in HANDLERS.items()}


def _handler_name(cls: type[Any]) -> str:
    return _NAMES[cls]
