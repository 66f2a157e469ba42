"""The pool registry: ``-P <name>`` picks a :class:`~conveyor.worker.pool.Pool` class.

``prefork`` (the supervisor, worker/supervisor.py), ``threads`` and ``solo``
(worker/inprocess.py), ``asyncio`` (worker/asyncpool.py), ``gevent`` and ``eventlet``
(worker/green.py) are registered here; ``register_pool`` adds another without touching
the worker.

The built-in pools are named here and imported when chosen: a prefork worker never
imports the asyncio pool's event loop nor the green pools' modules (start-up time,
issue 17).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError

if TYPE_CHECKING:
    from .main import Worker
    from .pool import Pool

__all__ = ["pool_class", "pool_names", "register_pool", "run_in_process"]

_REGISTRY: dict[str, type[Pool]] = {}
# The built-in pools, in the order they are listed: name -> (module, class), imported
# on first use.
_BUILT_IN: dict[str, tuple[str, str]] = {
    "prefork": ("supervisor", "Supervisor"),
    "threads": ("inprocess", "ThreadsPool"),
    "solo": ("inprocess", "SoloPool"),
    "asyncio": ("asyncpool", "AsyncioPool"),
    "gevent": ("green", "GeventPool"),
    "eventlet": ("green", "EventletPool"),
}


def _built_in(name: str) -> type[Pool] | None:
    """The built-in pool ``name``, imported and registered now; None if there is none."""
    found = _REGISTRY.get(name)
    if found is None and name in _BUILT_IN:
        module, attribute = _BUILT_IN[name]
        found = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
        _REGISTRY[name] = found
    return found


def register_pool(cls: type[Pool]) -> type[Pool]:
    """Make ``cls`` selectable as ``-P <cls.name>`` (usable as a class decorator)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"pool class {cls.__qualname__} has no name")
    existing = _built_in(name)
    if existing is not None and existing is not cls:
        raise ConfigurationError(
            f"pool {name!r} is already registered as "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    _REGISTRY[name] = cls
    return cls


def pool_names() -> list[str]:
    """The registered pool names, in registration order."""
    return list(dict.fromkeys([*_BUILT_IN, *_REGISTRY]))


def pool_class(name: str) -> type[Pool]:
    """The pool class registered as ``name``; a clear error names the registered ones."""
    found = _built_in(name)
    if found is None:
        raise ConfigurationError(
            f"unknown pool {name!r}: expected one of {', '.join(pool_names())}"
        )
    return found


def run_in_process(worker: Worker, threads: int) -> int:
    """Run ``threads`` loops of the worker in this process (0 = solo, in the calling
    thread) until it stops, without touching signal handlers: for embedding a worker
    in a thread (tests, notebooks)."""
    from .inprocess import SoloPool, ThreadsPool

    pool = SoloPool(worker) if threads <= 0 else ThreadsPool(worker, threads)
    return pool.consume()
