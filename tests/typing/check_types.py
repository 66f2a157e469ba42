"""Checked by mypy (tests/typing/test_typing.py), never run: the user's view of types.

Each ``type: ignore[...]`` line must be an error; mypy's ``warn_unused_ignores`` (strict)
fails the check if one of them stops being one.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

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
# Django (issue 14): the same checks on delay_on_commit, which returns nothing.
add.delay_on_commit(1, 2)
add.delay_on_commit("one", 2)  # type: ignore[arg-type]

celery_app: Conveyor = Celery("same-class")

# Scheduling and flow control (issue 6).
from conveyor.schedules import crontab  # noqa: E402


@app.task(rate_limit="10/s", concurrency_limit=2, concurrency_key="customer_id")
def sync(customer_id: int) -> None: ...


app.conf.beat_schedule = {"nightly": {"task": "typed.add", "schedule": crontab(minute=0, hour=3)}}
assert_type(app.add_periodic_task(10.0, add, args=(1, 2), name="add every 10"), str)
assert_type(add.apply_async((1, 2), idempotency_key="charge-1"), AsyncResult[int])
crontab(minute=1.5)  # type: ignore[arg-type]

# Workflows (issue 5).
from conveyor import GroupResult, Signature, chain, chord, group  # noqa: E402

assert_type(add.s(1), Signature[int])
assert_type(add.si(1, 2).delay().get(), int)
assert_type(add.s(1, 2).freeze(), AsyncResult[int])
assert_type(group(add.s(i, i) for i in range(3)).apply_async(), GroupResult)
assert_type(chain(add.s(1, 2), add.s(3)).apply_async(), AsyncResult[Any])
add.s(1).link("not a signature")  # type: ignore[arg-type]
chord([add.s(1, 1)], add.s(2)).apply_async(link=add.s(3))


# async def tasks: the result is the coroutine's value; a direct call is the coroutine.
@app.task
async def fetch(url: str) -> bytes:
    return url.encode()


@app.task(bind=True, soft_time_limit=5)
async def bound_fetch(self: Task[..., bytes], url: str) -> bytes:
    return url.encode()


async def async_client() -> None:
    assert_type(await fetch.adelay("u"), AsyncResult[bytes])
    assert_type(await (await fetch.adelay("u")).aget(timeout=1), bytes)
    assert_type(await (await fetch.aapply_async(("u",), countdown=1)), bytes)
    assert_type(await bound_fetch.adelay("u"), AsyncResult[bytes])
    await fetch.adelay(1)  # type: ignore[arg-type]


assert_type(fetch.delay("u").get(), bytes)
assert_type(bound_fetch.delay("u").get(), bytes)
direct = fetch("u")
_ = assert_type(direct, Coroutine[Any, Any, bytes])
direct.close()


async def sync_task_from_async_code() -> None:
    assert_type(await (await add.adelay(1, 2)), int)
