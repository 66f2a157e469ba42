"""gevent and eventlet behind one small interface, for the green pools (worker/green.py).

Each library is imported only when its pool runs (both are optional extras:
``conveyor[gevent]``, ``conveyor[eventlet]``), and a missing one is one clear error.
"""

from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["EventletLib", "GeventLib", "GreenLib"]


class GreenLib(ABC):
    """What a green pool needs of its library."""

    name: str

    def __init__(self) -> None:
        try:
            self.module: Any = importlib.import_module(self.name)
        except ImportError as exc:
            raise ConfigurationError(
                f"the {self.name} pool needs {self.name}: pip install 'conveyor[{self.name}]' "
                f"({exc})"
            ) from None

    @abstractmethod
    def patched(self) -> bool:
        """The standard library's socket, threading and time are this library's."""

    @abstractmethod
    def spawn(self, function: Callable[[], None]) -> Any:
        """Run ``function`` on a new greenlet; returns its handle."""

    @abstractmethod
    def kill(self, greenlet: Any, exc: BaseException) -> None:
        """Raise ``exc`` in ``greenlet`` when it next yields (called from another one)."""

    @abstractmethod
    def join(self, greenlet: Any, timeout: float) -> bool:
        """Wait up to ``timeout`` for ``greenlet`` to end; True if it did."""

    @abstractmethod
    def timeout(self, seconds: float, exc: BaseException) -> Any:
        """A started timer that raises ``exc`` in the calling greenlet after ``seconds``;
        its ``cancel()`` stops it."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Yield to the hub for ``seconds``."""

    @abstractmethod
    def real_thread(self, function: Callable[[], None]) -> None:
        """Run ``function`` on an operating-system thread (it must use no patched lock)."""

    @abstractmethod
    def real_sleep(self, seconds: float) -> None:
        """Block the calling OS thread (for that real thread)."""


class GeventLib(GreenLib):
    name = "gevent"

    def patched(self) -> bool:
        from gevent import monkey

        return bool(monkey.is_module_patched("socket") and monkey.is_module_patched("threading"))

    def spawn(self, function: Callable[[], None]) -> Any:
        return self.module.spawn(function)

    def kill(self, greenlet: Any, exc: BaseException) -> None:
        greenlet.kill(exc, block=False)

    def join(self, greenlet: Any, timeout: float) -> bool:
        greenlet.join(timeout)
        return bool(greenlet.dead)

    def timeout(self, seconds: float, exc: BaseException) -> Any:
        timer = self.module.Timeout(seconds, exc)
        timer.start()
        return timer

    def sleep(self, seconds: float) -> None:
        self.module.sleep(seconds)

    def real_thread(self, function: Callable[[], None]) -> None:
        from gevent import monkey

        monkey.get_original("_thread", "start_new_thread")(function, ())

    def real_sleep(self, seconds: float) -> None:
        from gevent import monkey

        monkey.get_original("time", "sleep")(seconds)


class EventletLib(GreenLib):
    name = "eventlet"

    def patched(self) -> bool:
        from eventlet import patcher

        return bool(patcher.is_monkey_patched("socket") and patcher.is_monkey_patched("thread"))

    def spawn(self, function: Callable[[], None]) -> Any:
        return self.module.spawn(function)

    def kill(self, greenlet: Any, exc: BaseException) -> None:
        # Not greenthread.kill: that switches into the target at once, from the killer's
        # stack; a timer at 0 s throws from the hub instead, like gevent's kill.
        hub = self.module.hubs.get_hub()
        hub.schedule_call_global(0, _throw_if_alive, greenlet, exc)

    def join(self, greenlet: Any, timeout: float) -> bool:
        with self.module.Timeout(timeout, False):
            with contextlib.suppress(Exception):  # it ended by raising (already logged)
                greenlet.wait()
            return True
        return bool(greenlet.dead)

    def timeout(self, seconds: float, exc: BaseException) -> Any:
        return self.module.Timeout(seconds, exc)  # eventlet's starts when made

    def sleep(self, seconds: float) -> None:
        self.module.sleep(seconds)

    def real_thread(self, function: Callable[[], None]) -> None:
        from eventlet import patcher

        patcher.original("_thread").start_new_thread(function, ())

    def real_sleep(self, seconds: float) -> None:
        from eventlet import patcher

        patcher.original("time").sleep(seconds)


def _throw_if_alive(greenlet: Any, exc: BaseException) -> None:
    if not greenlet.dead:
        greenlet.throw(exc)
