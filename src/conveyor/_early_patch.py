"""Monkey-patch for ``-P gevent`` / ``-P eventlet`` before anything else is imported.

A green pool only works if ``socket``, ``threading``, ``time`` and ``select`` are the
green ones everywhere, including in objects made at import time (``task.py``'s request
stack is a ``threading.local``; a real one would be shared by every greenlet of the
thread). Celery patches in its entry point, ``celery/__main__.py``'s
``maybe_patch_concurrency``, by scanning ``sys.argv`` for ``-P``/``--pool``. Our entry
point (``conveyor.cli.main:main``, or ``python -m conveyor``) lives inside the package,
and importing it runs ``conveyor/__init__.py`` first, which imports the app, the task
module and redis-py; so this scan runs at the top of ``conveyor/__init__.py``, and only
when the process was started as the ``conveyor`` command. A program that embeds a worker
calls :func:`patch` itself, first thing; the pool refuses to run unpatched
(worker/green.py).

Standard library only: nothing of conveyor may be imported before the patch.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Sequence

__all__ = ["GREEN_POOLS", "patch", "patch_for_command_line", "pool_in_argv"]

GREEN_POOLS = ("gevent", "eventlet")


def pool_in_argv(argv: Sequence[str]) -> str | None:
    """The value of the last ``-P``/``--pool`` in ``argv`` (``-P x``, ``-Px``,
    ``--pool x``, ``--pool=x``), or None."""
    found: str | None = None
    for i, arg in enumerate(argv):
        if arg in ("-P", "--pool"):
            if i + 1 < len(argv):
                found = argv[i + 1]
        elif arg.startswith("--pool="):
            found = arg[len("--pool=") :]
        elif arg.startswith("-P") and len(arg) > 2 and not arg.startswith("--"):
            found = arg[2:]
    return found


def _started_as_command() -> bool:
    """This process is ``conveyor ...`` or ``python -m conveyor ...``."""
    if os.path.basename(sys.argv[0]) == "conveyor":
        return True
    orig = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b == "conveyor" for a, b in itertools.pairwise(orig))


# The green pool this process was patched for, if any (read by coroutines.py).
patched: str | None = None


def patch(pool: str) -> None:
    """Monkey-patch the standard library for ``pool`` (gevent or eventlet)."""
    global patched
    if pool == "gevent":
        from gevent import monkey

        monkey.patch_all()
    elif pool == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    else:
        raise ValueError(f"no monkey-patching for pool {pool!r}: expected one of {GREEN_POOLS}")
    patched = pool


def patch_for_command_line() -> None:
    """Patch now if this process is the conveyor command with a green ``-P``. A missing
    library is left for the pool to report in one line when the worker starts."""
    if not _started_as_command():
        return
    pool = pool_in_argv(sys.argv[1:])
    if pool in GREEN_POOLS:
        try:
            patch(pool)
        except ImportError:
            return
