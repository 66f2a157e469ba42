"""Finding the app that ``-A`` names, as Celery does."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from typing import Any

from ..app import Conveyor
from ..exceptions import AppNotFound

__all__ = ["find_app"]

_EXPECTED = "expected a module path like 'proj.tasks' or 'proj.tasks:app'"


def find_app(spec: str) -> Conveyor:
    """``module:attr``, or the module's ``app``/``celery`` attribute, or the same in its
    ``celery`` submodule (``-A proj`` finds ``proj/celery.py``). The current directory is
    importable, as with ``celery -A``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = spec.partition(":")
    module = _import(module_name)
    if attribute:
        found = _resolve(module, attribute)
        if not isinstance(found, Conveyor):
            raise AppNotFound(f"{spec!r} is a {type(found).__name__}, not a conveyor app")
        return found
    app = _app_in(module)
    if app is None:
        try:
            submodule = importlib.import_module(f"{module_name}.celery")
        except ModuleNotFoundError:
            submodule = None
        app = _app_in(submodule) if submodule is not None else None
    if app is None:
        raise AppNotFound(
            f"module {module_name!r} has no conveyor app: expected an attribute named 'app' "
            f"or 'celery' (or name it: -A {module_name}:my_app)"
        )
    return app


def _import(name: str) -> Any:
    if not name:
        raise AppNotFound(f"-A is empty: {_EXPECTED}")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise AppNotFound(f"cannot import module {name!r} (-A): {_EXPECTED}") from None
        raise AppNotFound(f"module {name!r} failed to import: {exc}{_where(exc)}") from exc
    except Exception as exc:
        raise AppNotFound(
            f"module {name!r} failed to import: {type(exc).__name__}: {exc}{_where(exc)}"
        ) from exc


def where_raised(exc: BaseException) -> tuple[str, int] | None:
    """The file and line of the user's code that raised ``exc`` during an import (the
    innermost frame outside importlib), or of the syntax error itself."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return exc.filename, exc.lineno
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen ") and frame.filename != __file__
    ]
    if not frames or frames[-1].lineno is None:
        return None
    return frames[-1].filename, frames[-1].lineno


def _where(exc: BaseException) -> str:
    found = where_raised(exc)
    if found is None:
        return ""
    path, line = found
    with contextlib.suppress(ValueError):  # another drive (Windows): keep it absolute
        path = os.path.relpath(path)
    return f" ({path}, line {line}; the traceback at -l debug)"


def _resolve(module: Any, attribute: str) -> Any:
    obj = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppNotFound(
                f"module {module.__name__!r} has no attribute {attribute!r}"
            ) from None
    return obj


def _app_in(module: Any) -> Conveyor | None:
    for name in ("app", "celery"):
        candidate = getattr(module, name, None)
        if isinstance(candidate, Conveyor):
            return candidate
    apps = [v for v in vars(module).values() if isinstance(v, Conveyor)]
    return apps[0] if len(apps) == 1 else None
