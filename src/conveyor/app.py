"""Conveyor: the app. Its configuration, its task registry, and its broker and backend."""

from __future__ import annotations

import fnmatch
import importlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from .builtins import register_builtins
from .config import Settings
from .events import EventBus
from .exceptions import ConfigurationError, NotRegistered
from .result import AsyncResult
from .signals import Signal
from .task import Task

if TYPE_CHECKING:
    from .control import Control
    from .stores.results import ResultBackend
    from .stores.transport import Broker

__all__ = ["Conveyor", "current_app", "shared_task"]

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
        self.tasks: dict[str, Task[..., Any]] = {}
        self._broker: Broker | None = None
        self._backend: ResultBackend | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Celery's app signals, for ``@app.on_after_configure.connect`` receivers that
        # call ``sender.add_periodic_task(...)``; sent once by finalize() (beat calls it).
        self.on_after_configure = Signal("on_after_configure", ("source",))
        self.on_after_finalize = Signal("on_after_finalize")
        self._finalized = False
        # Typed events (conveyor/events.py): ``app.events.subscribe(listener)``.
        self.events = EventBus(self)
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
        return f"sqlite:///{default_data_dir() / 'broker.db'}"

    @property
    def backend_url(self) -> str:
        self.conf.apply_environment()
        url: str | None = self.conf.result_backend
        if url:
            return url
        # Without a backend setting, results live beside the messages.
        return self.broker_url

    # broker and backend, made on first use and again in a forked child ---------------
    @property
    def broker(self) -> Broker:
        if self._broker is None or self._pid != os.getpid():
            with self._lock:
                if self._broker is None or self._pid != os.getpid():
                    from .stores import broker_from_url

                    self._adopt_fork()
                    self._broker = broker_from_url(
                        self.broker_url,
                        key_prefix=self.conf.redis_key_prefix,
                        transport_options=self.conf.broker_transport_options,
                    )
        return self._broker

    @property
    def backend(self) -> ResultBackend:
        if self._backend is None or self._pid != os.getpid():
            with self._lock:
                if self._backend is None or self._pid != os.getpid():
                    from .stores import backend_from_url

                    self._adopt_fork()
                    self._backend = backend_from_url(
                        self.backend_url,
                        key_prefix=self.conf.redis_key_prefix,
                        expires=float(self.conf.result_expires or 86400),
                        transport_options=self._backend_transport_options(),
                    )
        return self._backend

    def _backend_transport_options(self) -> dict[str, Any]:
        # Celery: result_backend_transport_options; a backend on the broker's own URL
        # (no result_backend set) reads the broker's (the sentinel master_name).
        options: dict[str, Any] = dict(self.conf.result_backend_transport_options or {})
        if not options and self.backend_url == self.broker_url:
            options = dict(self.conf.broker_transport_options or {})
        return options

    def _adopt_fork(self) -> None:
        # In a forked child the parent's connections are not ours: forget (never close)
        # them, so the child makes its own.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._broker = None
            self._backend = None

    def _reset_connections(self) -> None:
        self.close()

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._broker is not None:
                self._broker.close()
            if self._backend is not None:
                self._backend.close()
        self._broker = None
        self._backend = None

    # tasks -------------------------------------------------------------------------
    @overload
    def task(self, fun: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self, fun: None = None, /, *, bind: Literal[True], name: str | None = ..., **options: Any
    ) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...

    @overload
    def task(
        self,
        fun: None = None,
        /,
        *,
        bind: Literal[False] = ...,
        name: str | None = ...,
        **options: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

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

        def decorate(f: Callable[..., Any]) -> Task[..., Any]:
            return self._register(f, options)

        return decorate

    def _register(self, fun: Callable[..., Any], options: Mapping[str, Any]) -> Task[..., Any]:
        name = options.get("name") or self.gen_task_name(fun)
        existing = self.tasks.get(name)
        if existing is not None and getattr(existing, "__wrapped__", None) is fun:
            return existing
        base: type[Task[..., Any]] = options.get("base") or Task
        task = base(fun, self, name, {k: v for k, v in options.items() if k != "name"})
        self.tasks[name] = task
        return task

    def gen_task_name(self, fun: Callable[..., Any]) -> str:
        """The import path of the function, as Celery names tasks."""
        module = fun.__module__
        if module == "__main__" and self.main != "__main__":
            module = self.main
        return f"{module}.{fun.__qualname__}"

    def get_task(self, name: str) -> Task[..., Any]:
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
            task = Task(_not_here(name), self, name)
        return task.apply_async(args, kwargs, **options)

    @property
    def control(self) -> Control:
        """Commands for the workers: ``app.control.revoke(task_id, terminate=True)``."""
        from .control import Control

        return Control(self)

    def AsyncResult(self, task_id: str) -> AsyncResult[Any]:
        return AsyncResult(task_id, self)

    def route(self, name: str) -> str:
        """The queue a task goes to: ``task_routes`` (exact name, then glob), else the
        default queue."""
        values = self.conf.raw
        routes = values["task_routes"]
        if routes:
            for table in routes if isinstance(routes, (list, tuple)) else (routes,):
                queue = _match_route(table, name)
                if queue:
                    return queue
        default: str = values["task_default_queue"]
        return default

    # periodic tasks ----------------------------------------------------------------
    def finalize(self) -> None:
        """Send ``on_after_configure`` and ``on_after_finalize`` (once), so receivers can
        add periodic tasks. Beat calls it after importing the app's modules."""
        if self._finalized:
            return
        self._finalized = True
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
        """Import the modules in ``include`` and ``imports`` (the worker does this)."""
        for module in (*self.conf.imports, *self.conf.include):
            importlib.import_module(module)

    def autodiscover_tasks(self, packages: Iterable[str], related_name: str = "tasks") -> None:
        for package in packages:
            try:
                importlib.import_module(f"{package}.{related_name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{related_name}":
                    raise

    def __repr__(self) -> str:
        return f"<Conveyor {self.main}>"


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


def _not_here(name: str) -> Callable[..., Any]:
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
