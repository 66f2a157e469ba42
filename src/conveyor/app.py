"""Conveyor: the app. Its configuration, its task registry, and its broker and backend."""

from __future__ import annotations

import copy
import importlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

from .builtins import register_builtins
from .config import Settings
from .events import EventBus
from .exceptions import ConfigurationError, NotRegistered
from .producer import Producer
from .result import AsyncResult
from .signals import Signal
from .task import AsyncTask, Task
from .task import Task as AnyTask  # a name the ``Conveyor.Task`` property does not hide

if TYPE_CHECKING:
    from .canvas import Signature
    from .observe.control import Control
    from .stores.coordination import Coordinator
    from .stores.results import ResultBackend
    from .stores.transport import Transport

__all__ = ["Conveyor", "current_app", "shared_task"]

logger = logging.getLogger("conveyor")

# This process's id, kept current across os.fork() (os.getpid() is a system call, and
# every send asks which process it is in, to make its own connections after a fork).
_this_process = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _this_process.__setitem__(0, os.getpid()))

P = ParamSpec("P")
R = TypeVar("R")

_current: Conveyor | None = None
_shared: list[tuple[Callable[..., Any], dict[str, Any]]] = []
_all_apps: list[Conveyor] = []


def current_app() -> Conveyor:
    """The app made most recently (or set with ``set_current``); shared tasks use it."""
    global _current
    if _current is None:
        _current = Conveyor("default")
    return _current


def default_data_dir() -> Path:
    """Where the embedded broker keeps its file: ``$CONVEYOR_HOME`` or the user data dir."""
    home = os.environ.get("CONVEYOR_HOME")
    if home:
        return Path(home)
    import platformdirs

    return Path(platformdirs.user_data_dir("conveyor"))



class _TaskDecorator(Protocol):
    """``@app.task(...)``: an ``async def`` becomes an AsyncTask, anything else a Task."""

    @overload
    def __call__(
        self, fun: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, fun: Callable[P, R], /) -> AnyTask[P, R]: ...


class _BoundTaskDecorator(Protocol):
    """``@app.task(bind=True, ...)``: as :class:`_TaskDecorator`, ``self`` first."""

    @overload
    def __call__(
        self, fun: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...

    @overload
    def __call__(self, fun: Callable[Concatenate[Any, P], R], /) -> AnyTask[P, R]: ...

class Conveyor:
    """A conveyor application; ``Celery`` is the same class under Celery's name.

    >>> app = Conveyor("proj", broker="redis://localhost:6379/0",
    ...                backend="redis://localhost:6379/0", include=["proj.tasks"])
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        broker: str | None = None,
        backend: str | None = None,
        include: Sequence[str] | None = None,
        config_source: Any = None,
        set_as_current: bool = True,
        **settings: Any,
    ) -> None:
        self.main = main or "__main__"
        self.conf = Settings()
        if config_source is not None:
            self.conf.from_object(config_source)
        if broker:
            self.conf.broker_url = broker
        if backend:
            self.conf.result_backend = backend
        if include:
            self.conf.include = tuple(include)
        if settings:
            self.conf.update(settings)
        self.tasks: dict[str, AnyTask[..., Any]] = {}
        self._broker: Transport | None = None
        self._coordinator: Coordinator | None = None
        self._backend: ResultBackend | None = None
        self._lock = threading.Lock()
        self._pid = _this_process[0]
        # Celery's app signals, for ``@app.on_after_configure.connect`` receivers that
        # call ``sender.add_periodic_task(...)``; sent once by finalize() (beat calls it).
        self.on_after_configure = Signal("on_after_configure", ("source",))
        self.on_after_finalize = Signal("on_after_finalize")
        self._finalized = False
        # Typed events (conveyor/events.py): ``app.events.subscribe(listener)``.
        self.events = EventBus(self)
        self._autodiscover: list[tuple[Any, str]] = []  # put off until finalize/start
        self._announced_default = False
        # Every message leaves through it (conveyor/producer.py).
        self.producer = Producer(self)
        for fun, options in _shared:
            self._register(fun, options)
        register_builtins(self)  # the chord join, map and starmap tasks workflows send
        _all_apps.append(self)
        if set_as_current:
            self.set_current()

    def set_current(self) -> None:
        global _current
        _current = self

    # configuration -----------------------------------------------------------------
    def config_from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Load settings from a module (or its dotted name), a class or a mapping.

        Reads Celery's lower-case names and the old upper-case ones
        (``CELERY_RESULT_BACKEND``); ``namespace="CELERY"`` reads ``CELERY_BROKER_URL``.
        """
        self.conf.from_object(obj, namespace=namespace)
        self._reset_connections()

    def config_from_envvar(self, variable: str, namespace: str | None = None) -> None:
        module = os.environ.get(variable)
        if not module:
            raise ConfigurationError(f"environment variable {variable} is not set")
        self.config_from_object(module, namespace=namespace)

    def setup_security(self, **overrides: Any) -> None:
        """Sign every message this process sends and run only signed ones (Celery's
        ``app.setup_security()``): reads ``security_key``, ``security_certificate``,
        ``security_cert_store`` and ``security_digest``; needs ``task_serializer="auth"``
        and ``accept_content=["auth"]``. Keyword arguments (key, cert, store, digest,
        key_password, serializer) override the settings. See :mod:`conveyor.signing`."""
        from .signing import setup_security

        setup_security(self.conf, **overrides)

    @property
    def broker_url(self) -> str:
        self.conf.apply_environment()
        url: str | None = self.conf.broker_url
        if url:
            return url
        path = default_data_dir() / "broker.db"
        if not self._announced_default:
            # No broker setting of any form (config.py refuses the ones it cannot
            # read): say so once in every process that sends, not only in the
            # worker's banner, so a misnamed setting is noticed at once.
            self._announced_default = True
            logger.warning("no broker_url set: using the embedded SQLite broker at %s", path)
        return f"sqlite:///{path}"

    @property
    def backend_url(self) -> str:
        self.conf.apply_environment()
        url: str | None = self.conf.result_backend
        if url:
            return url
        broker_url = self.broker_url
        if broker_url.split("://", 1)[0].lower() in ("amqp", "amqps", "pyamqp"):
            raise ConfigurationError(
                "RabbitMQ holds messages only: set result_backend to a redis:// or "
                "sqlite:/// URL for results (and, unless coordinator_url says otherwise, "
                "for rate limits, revocations, beat and chords)"
            )
        # Without a backend setting, results live beside the messages.
        return broker_url

    @property
    def coordinator_url(self) -> str | None:
        """Where workers share state; None: in the broker's own store."""
        self.conf.apply_environment()
        url: str | None = self.conf.coordinator_url
        return url if url and url != self.broker_url else None

    # broker, coordinator and backend, made on first use and again in a forked child --
    @property
    def broker(self) -> Transport:
        """The transport: moves messages (``broker_url``)."""
        if self._broker is None or self._pid != _this_process[0]:
            with self._lock:
                if self._broker is None or self._pid != _this_process[0]:
                    from .stores import check_backend_url, transport_from_url

                    # A backend conveyor lacks fails here, at the first send or at worker
                    # start, rather than at the first .get() after work was sent.
                    check_backend_url(self.backend_url)
                    self._adopt_fork()
                    conf = self.conf
                    self._broker = transport_from_url(
                        self.broker_url,
                        key_prefix=conf.redis_key_prefix,
                        transport_options=conf.broker_transport_options,
                        # read by amqp:// only
                        heartbeat=conf.broker_heartbeat,
                        connect_timeout=conf.broker_connection_timeout,
                        retry_on_startup=conf.broker_connection_retry_on_startup,
                        max_retries=conf.broker_connection_max_retries,
                        use_ssl=conf.broker_use_ssl,
                        known_queues=self._routed_queues(),
                    )
        return self._broker

    @property
    def coordinator(self) -> Coordinator:
        """State shared by all workers: leases, rate limits, concurrency slots, unique
        keys, schedule state, revocations, the worker registry and dead letters. In the
        broker's store unless ``coordinator_url`` names another; a broker that only
        moves messages without one is a ConfigurationError here (so at start)."""
        if self._coordinator is None or self._pid != _this_process[0]:
            broker = self.broker  # first: a forked child adopts itself there
            with self._lock:
                if self._coordinator is None or self._pid != _this_process[0]:
                    from .stores import coordinator_for, coordinator_from_url

                    self._adopt_fork()
                    url = self.coordinator_url or self._coordinator_beside_results(broker)
                    self._coordinator = (
                        coordinator_from_url(
                            url,
                            key_prefix=self.conf.redis_key_prefix,
                            transport_options=self.conf.coordinator_transport_options,
                        )
                        if url
                        else coordinator_for(broker)
                    )
        return self._coordinator

    def _routed_queues(self) -> list[str]:
        """The default queue, every queue named in ``task_routes`` and the tasks' own
        ``queue`` options: an AMQP broker cannot list a vhost's queues, so ``conveyor
        status`` asks for these."""
        names = {str(self.conf.task_default_queue)}
        names.update(str(task.queue) for task in self.tasks.values() if task.queue)
        routes = self.conf.raw["task_routes"]
        for table in routes if isinstance(routes, (list, tuple)) else (routes,):
            if isinstance(table, Mapping):
                for target in table.values():
                    queue = target.get("queue") if isinstance(target, Mapping) else target
                    if isinstance(queue, str) and queue:
                        names.add(queue)
        return sorted(names)

    def _coordinator_beside_results(self, broker: Transport) -> str | None:
        """A broker that only moves messages (amqp://) coordinates in the result
        backend's store by default (issue 15): one Redis or SQLite for both."""
        from .stores import CoordinatingStore

        if isinstance(broker, CoordinatingStore):
            return None
        return self.backend_url

    @property
    def backend(self) -> ResultBackend:
        if self._backend is None or self._pid != _this_process[0]:
            with self._lock:
                if self._backend is None or self._pid != _this_process[0]:
                    from .stores import backend_from_url

                    self._adopt_fork()
                    self._backend = backend_from_url(
                        self.backend_url,
                        key_prefix=self.conf.redis_key_prefix,
                        expires=float(self.conf.result_expires or 86400),
                        transport_options=self._backend_transport_options(),
                        use_ssl=self._backend_use_ssl(),
                    )
        return self._backend

    def _backend_transport_options(self) -> dict[str, Any]:
        # Celery: result_backend_transport_options; a backend on the broker's own URL
        # (no result_backend set) reads the broker's (the sentinel master_name).
        options: dict[str, Any] = dict(self.conf.result_backend_transport_options or {})
        if not options and self.backend_url == self.broker_url:
            options = dict(self.conf.broker_transport_options or {})
        return options

    def _backend_use_ssl(self) -> Any:
        # Celery: redis_backend_use_ssl; results on the broker's own URL use the broker's.
        use_ssl = self.conf.redis_backend_use_ssl
        if use_ssl is None and self.backend_url == self.broker_url:
            use_ssl = self.conf.broker_use_ssl
        return use_ssl

    def _adopt_fork(self) -> None:
        # In a forked child the parent's connections are not ours: forget (never close)
        # them, so the child makes its own.
        if self._pid != _this_process[0]:
            self._pid = _this_process[0]
            self._broker = None
            self._coordinator = None
            self._backend = None

    def _reset_connections(self) -> None:
        self.close()

    def close(self) -> None:
        if self._pid == _this_process[0]:
            if self._coordinator is not None:
                self._coordinator.close()
            if self._broker is not None:
                self._broker.close()
            if self._backend is not None:
                self._backend.close()
        self._broker = None
        self._coordinator = None
        self._backend = None

    # tasks -------------------------------------------------------------------------
    @overload
    def task(  # an async def is matched here first
        self, fun: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...

    @overload
    def task(self, fun: Callable[P, R], /) -> AnyTask[P, R]: ...

    @overload
    def task(
        self, fun: None = None, /, *, bind: Literal[True], name: str | None = ..., **options: Any
    ) -> _BoundTaskDecorator: ...

    @overload
    def task(
        self,
        fun: None = None,
        /,
        *,
        bind: Literal[False] = ...,
        name: str | None = ...,
        **options: Any,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fun: Callable[..., Any] | None = None,
        /,
        *,
        bind: bool = False,
        name: str | None = None,
        **options: Any,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=..., bind=True,
        ignore_result=..., queue=..., priority=..., acks_late=..., serializer=...)``."""
        if bind:
            options["bind"] = True
        if name:
            options["name"] = name
        if fun is not None and callable(fun) and not options:
            return self._register(fun, {})

        def decorate(f: Callable[..., Any]) -> AnyTask[..., Any]:
            return self._register(f, options)

        return decorate

    @property
    def Task(self) -> type[AnyTask[..., Any]]:
        """The base class of this app's tasks, for class-based tasks:
        ``class Resize(app.Task): def run(self, path): ...`` then
        ``app.register_task(Resize())``; or a custom base, ``@app.task(base=MyBase)``."""
        bound = self.__dict__.get("_task_class")
        if bound is None:
            bound = type("Task", (AnyTask,), {"_bound_app": self, "__module__": AnyTask.__module__})
            self.__dict__["_task_class"] = bound
        return bound

    def register_task(self, task: AnyTask[..., Any] | type[AnyTask[..., Any]]) -> AnyTask[..., Any]:
        """Register a class-based task (an instance, or the class to make one), named
        ``module.ClassName`` unless it sets ``name`` (Celery's ``register_task``)."""
        instance = task() if isinstance(task, type) else task
        if not instance.name:
            cls = type(instance)
            instance.name = f"{cls.__module__}.{cls.__qualname__}"
        instance._app = self
        self.tasks[instance.name] = instance
        return instance

    def signature(self, varies: Any, *args: Any, **kwargs: Any) -> Signature[Any]:
        """``app.signature("tasks.add", args=(2, 2), countdown=10)``: a signature by task
        name (or from a signature or its dict), bound to this app."""
        from .canvas import signature

        return signature(varies, *args, app=self, **kwargs)

    def _register(self, fun: Callable[..., Any], options: Mapping[str, Any]) -> AnyTask[..., Any]:
        name = options.get("name") or self.gen_task_name(fun)
        existing = self.tasks.get(name)
        if existing is not None and getattr(existing, "__wrapped__", None) is fun:
            return existing
        base: type[AnyTask[..., Any]] = options.get("base") or AnyTask
        task = base(fun, self, name, {k: v for k, v in options.items() if k != "name"})
        self.tasks[name] = task
        return task

    def gen_task_name(self, fun: Callable[..., Any]) -> str:
        """The import path of the function, as Celery names tasks."""
        module = fun.__module__
        if module == "__main__" and self.main != "__main__":
            module = self.main
        return f"{module}.{fun.__qualname__}"

    def get_task(self, name: str) -> AnyTask[..., Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise NotRegistered(f"task {name!r} is not registered") from None

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Send a task by name, without importing its code."""
        task = self.tasks.get(name)
        if task is None:
            task = AnyTask(missing_task_body(name), self, name)
        elif task.typing:
            # By name, as Celery's send_task: no argument check here (the worker that
            # runs it refuses a call that does not fit, with a reason).
            task = copy.copy(task)
            task.typing = False
        return task.apply_async(args, kwargs, **options)

    @property
    def control(self) -> Control:
        """Commands for the workers: ``app.control.revoke(task_id, terminate=True)``."""
        from .observe.control import Control

        return Control(self)

    def AsyncResult(self, task_id: str) -> AsyncResult[Any]:
        return AsyncResult(task_id, self)

    def route(self, name: str) -> str:
        """The queue ``task_routes`` gives a task, else the default queue (see
        :meth:`conveyor.producer.Producer.route`)."""
        return self.producer.route(name)

    # periodic tasks ----------------------------------------------------------------
    def finalize(self) -> None:
        """Send ``on_after_configure`` and ``on_after_finalize`` (once), so receivers can
        add periodic tasks. Beat calls it after importing the app's modules."""
        if self._finalized:
            return
        self._finalized = True
        pending, self._autodiscover = self._autodiscover, []
        for packages, related_name in pending:
            self._discover(packages, related_name)
        self.on_after_configure.send(sender=self, source=self.conf)
        self.on_after_finalize.send(sender=self)

    def add_periodic_task(
        self,
        schedule: Any,
        sig: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> str:
        """Add an entry to ``beat_schedule``, as Celery's does:
        ``sender.add_periodic_task(10.0, ping.s("hello"), name="ping every 10")``.

        ``schedule`` is seconds, a timedelta or a ``crontab``; ``sig`` a signature or a
        task (then ``args``/``kwargs`` are its arguments). Returns the entry's name.
        """
        from .beat.schedules import to_schedule

        task_name: Any
        if isinstance(sig, Task):
            task_name, sig_args, sig_kwargs, sig_options = sig.name, (), {}, {}
        else:
            task_name = getattr(sig, "task", None) or getattr(sig, "name", None)
            sig_args = tuple(getattr(sig, "args", ()) or ())
            sig_kwargs = dict(getattr(sig, "kwargs", None) or {})
            sig_options = dict(getattr(sig, "options", None) or {})
        if not isinstance(task_name, str) or not task_name:
            raise ConfigurationError(f"add_periodic_task: {sig!r} names no task")
        entry = {
            "task": task_name,
            "schedule": to_schedule(schedule),
            "args": (*sig_args, *args),
            "kwargs": {**sig_kwargs, **(kwargs or {})},
            "options": {**sig_options, **options},
        }
        key = name or f"{task_name}{entry['args']!r}{entry['kwargs']!r}"
        # A new dict: the default beat_schedule is shared by every app's settings.
        self.conf.beat_schedule = {**(self.conf.beat_schedule or {}), key: entry}
        return key

    # modules -----------------------------------------------------------------------
    def import_default_modules(self) -> None:
        """Import the modules in ``include`` and ``imports``, and those
        ``autodiscover_tasks`` put off (the worker and beat do this at start)."""
        # In a Django project, tasks.py modules import models: the app registry first.
        from .contrib.django.fixup import setup_if_configured

        setup_if_configured()
        for module in (*self.conf.imports, *self.conf.include):
            importlib.import_module(module)
        pending, self._autodiscover = self._autodiscover, []
        for packages, related_name in pending:
            self._discover(packages, related_name)

    def autodiscover_tasks(
        self,
        packages: Iterable[str] | Callable[[], Iterable[str]] | None = None,
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` for each package that has one (Celery's
        ``autodiscover_tasks``). ``packages`` may be a callable (``lambda:
        settings.INSTALLED_APPS``); None means Django's ``INSTALLED_APPS``. Without
        ``force`` the imports wait until the app is finalized or the worker starts
        (Django's app registry may not be ready yet); ``force=True`` imports now."""
        if force:
            self._discover(packages, related_name)
        else:
            self._autodiscover.append((packages, related_name))

    def _discover(self, packages: Any, related_name: str) -> None:
        if packages is None:
            from django.conf import settings

            packages = settings.INSTALLED_APPS
        if callable(packages):
            packages = packages()
        for package in packages:
            module = f"{package}.{related_name}" if related_name else package
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                # Only a package without that module is skipped; an import error
                # inside the module is the user's bug and is raised.
                if exc.name not in (module, package):
                    raise

    def __repr__(self) -> str:
        return f"<Conveyor {self.main}>"


def missing_task_body(name: str) -> Callable[..., Any]:
    def missing(*args: Any, **kwargs: Any) -> Any:
        raise NotRegistered(f"task {name!r} is not registered in this process")

    missing.__name__ = name.rsplit(".", 1)[-1]
    return missing


def shared_task(*args: Any, **options: Any) -> Any:
    """A task for reusable code that knows no app: it joins every app, and calling it
    sends through the current app (as Celery's ``shared_task`` does)."""

    def decorate(fun: Callable[..., Any]) -> Task[..., Any]:
        _shared.append((fun, dict(options)))
        for app in _all_apps:
            app._register(fun, options)
        name = options.get("name") or f"{fun.__module__}.{fun.__qualname__}"
        base: type[Task[..., Any]] = options.get("base") or Task
        return base(fun, None, name, {k: v for k, v in options.items() if k != "name"})

    if len(args) == 1 and callable(args[0]) and not options:
        return decorate(args[0])
    return decorate
