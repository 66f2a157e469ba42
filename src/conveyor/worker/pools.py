"""The pool registry: ``-P <name>`` picks a :class:`~conveyor.worker.pool.Pool` class.

``prefork`` (the supervisor, worker/supervisor.py), ``threads`` and ``solo``
(worker/inprocess.py), ``asyncio`` (worker/asyncpool.py), ``gevent`` and ``eventlet``
(worker/green.py) are registered here; ``register_pool`` adds another without touching
the worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .asyncpool import AsyncioPool
from .green import EventletPool, GeventPool
from .inprocess import SoloPool, ThreadsPool
from .pool import Pool
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .main import Worker

__all__ = ["pool_class", "pool_names", "register_pool", "run_in_process"]

_REGISTRY: dict[str, type[Pool]] = {}


def register_pool(cls: type[Pool]) -> type[Pool]:
    """Make ``cls`` selectable as ``-P <cls.name>`` (usable as a class decorator)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"pool class {cls.__qualname__} has no name")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ConfigurationError(
            f"pool {name!r} is already registered as "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    _REGISTRY[name] = cls
    return cls


def pool_names() -> list[str]:
    """The registered pool names, in registration order."""
    return list(_REGISTRY)


def pool_class(name: str) -> type[Pool]:
    """The pool class registered as ``name``; a clear error names the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown pool {name!r}: expected one of {', '.join(_REGISTRY)}"
        ) from None


for _builtin in (Supervisor, ThreadsPool, SoloPool, AsyncioPool, GeventPool, EventletPool):
    register_pool(_builtin)


def run_in_process(worker: Worker, threads: int) -> int:
    """Run ``threads`` loops of the worker in this process (0 = solo, in the calling
    thread) until it stops, without touching signal handlers: for embedding a worker
    in a thread (tests, notebooks)."""
    pool = SoloPool(worker) if threads <= 0 else ThreadsPool(worker, threads)
    return pool.consume()
