"""Checked by mypy (tests/typing/test_typing.py), never run: the user's view of types.

Each ``type: ignore[...]`` line must be an error; mypy's ``warn_unused_ignores`` (strict)
fails the check if one of them stops being one.
"""

from __future__ import annotations

from typing import assert_type

from conveyor import AsyncResult, Celery, Conveyor, Task

app = Conveyor("typed")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, name="typed.bound")
def bound(self: Task[..., str], text: str) -> str:
    return text


@app.task(queue="q")
def greet(name: str) -> str:
    return f"hi {name}"


assert_type(add.delay(1, 2), AsyncResult[int])
assert_type(add.delay(1, 2).get(timeout=1), int)
assert_type(add(1, 2), int)
assert_type(bound.delay("x"), AsyncResult[str])
assert_type(greet.delay("ann").get(), str)

add.delay("one", 2)  # type: ignore[arg-type]
add.delay(1)  # type: ignore[call-arg]
greet.delay(name=3)  # type: ignore[arg-type]
bound.delay(1)  # type: ignore[arg-type]

celery_app: Conveyor = Celery("same-class")
