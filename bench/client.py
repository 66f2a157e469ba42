"""Client-side measurements, one fresh process per measurement.

Usage: client.py {celery|conveyor} {enqueue|bulk|fill|roundtrip} N [WARMUP]
Prints one JSON object on stdout. A fresh process keeps client state (e.g. Celery's
result-channel subscriptions made by every .delay()) from leaking between runs.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from typing import Any


def enqueue(task: Any, n: int) -> dict[str, Any]:
    task.delay(-1)  # warm-up: opens the connections
    t0 = time.perf_counter()
    for i in range(n):
        task.delay(i)
    return {"seconds": time.perf_counter() - t0}


def bulk(framework: str, task: Any, n: int) -> dict[str, Any]:
    args = [(i,) for i in range(n)]
    task.delay(-1)  # warm-up: opens the connections
    t0 = time.perf_counter()
    if framework == "celery":
        from celery import group

        group(task.s(*a) for a in args).apply_async()
    else:
        task.delay_many(args)
    return {"seconds": time.perf_counter() - t0}


def fill(task: Any, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for i in range(n):
        task.delay(i)
    return {"seconds": time.perf_counter() - t0}


def roundtrip(task: Any, n: int, warmup: int) -> dict[str, Any]:
    task.delay(-1).get(timeout=60)  # waits for the worker to come up
    for _ in range(warmup):
        task.delay(0).get(timeout=5)
    lat: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        task.delay(i).get(timeout=5)
        lat.append((time.perf_counter() - t0) * 1000.0)
    return {"lat_ms": lat}


def main(argv: list[str]) -> None:
    framework, op, n = argv[0], argv[1], int(argv[2])
    task = importlib.import_module(f"{framework}_tasks").noop
    if op == "enqueue":
        out = enqueue(task, n)
    elif op == "bulk":
        out = bulk(framework, task, n)
    elif op == "fill":
        out = fill(task, n)
    elif op == "roundtrip":
        out = roundtrip(task, n, int(argv[3]))
    else:
        raise SystemExit(f"unknown op {op!r}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
