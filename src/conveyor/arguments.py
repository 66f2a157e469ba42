"""Checking a call's arguments against a task's signature, at send time.

Celery's ``typing`` (on by default) makes ``add.delay(1)`` raise ``TypeError`` in the
caller instead of failing later in a worker. ``inspect.Signature.bind`` does that in
microseconds per call; a function with the task's parameters and an empty body does it
in the interpreter's own argument binding, about ten times faster, so the check costs
little on the ``.delay()`` path. It is built once per task, from the parameter list
alone (names, kinds and defaults; never the annotations or the body).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["argument_checker"]

_KIND = inspect.Parameter


def argument_checker(fun: Callable[..., Any], skip_first: bool = False) -> Callable[..., None]:
    """A function that takes exactly the arguments ``fun`` takes (less the first one
    when ``skip_first``: a bound task's ``self``) and does nothing; calling it raises
    TypeError, naming the problem, when the arguments would not bind."""
    try:
        parameters = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):  # a builtin or C function: nothing to check
        return _anything
    if skip_first and parameters:
        parameters = parameters[1:]
    defaults: dict[str, Any] = {}
    parts: list[str] = []
    star_done = False
    slash_needed = False
    for parameter in parameters:
        name = parameter.name
        if parameter.kind is _KIND.POSITIONAL_ONLY:
            slash_needed = True
        elif slash_needed:
            parts.append("/")
            slash_needed = False
        if parameter.kind is _KIND.VAR_POSITIONAL:
            parts.append(f"*{parameter.name}")
            star_done = True
            continue
        if parameter.kind is _KIND.VAR_KEYWORD:
            parts.append(f"**{parameter.name}")
            continue
        if parameter.kind is _KIND.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        text = name
        if parameter.default is not _KIND.empty:
            defaults[name] = parameter.default
            text += f"=__defaults[{name!r}]"
        parts.append(text)
    if slash_needed:
        parts.append("/")
    namespace: dict[str, Any] = {"__defaults": defaults}
    exec(f"def check({', '.join(parts)}):\n    return None\n", namespace)
    checker: Callable[..., None] = namespace["check"]
    return checker


def _anything(*args: Any, **kwargs: Any) -> None:
    return None
