"""Client-side measurements for one peer, one fresh process per measurement.

Usage: peer_client.py PEER {enqueue|bulk|fill|roundtrip} N [WARMUP BUDGET_S]
       peer_client.py PEER info PROCESSES   (its worker command, version, concurrency)
Prints one JSON object on stdout. It runs in the peer's own interpreter (peers_run.py
--python), so a peer whose pins clash with conveyor's (arq) can live in a venv apart.
Async peers (arq, taskiq) are timed inside one event loop, so no loop start-up is
counted per call.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import sys
import time
from typing import Any

import peers


def run_sync(c: Any, op: str, n: int, warmup: int, budget: float) -> dict[str, Any]:
    if op == "roundtrip":
        c.wait(c.send(-1), 60.0)  # waits for the worker to come up
        for _ in range(warmup):
            c.wait(c.send(0), 10.0)
        lat: list[float] = []
        stop = time.perf_counter() + budget
        while len(lat) < n and time.perf_counter() < stop:
            t0 = time.perf_counter()
            c.wait(c.send(len(lat)), 10.0)
            lat.append((time.perf_counter() - t0) * 1000.0)
        return {"lat_ms": lat}
    args = [(i,) for i in range(n)]
    if op != "fill":
        c.send(-1)  # warm-up: opens the connections
    t0 = time.perf_counter()
    if op == "bulk":
        c.send_many(args)
    else:
        for (i,) in args:
            c.send(i)
    return {"seconds": time.perf_counter() - t0}


async def run_async(c: Any, op: str, n: int, warmup: int, budget: float) -> dict[str, Any]:
    if op == "roundtrip":
        await c.wait(await c.send(-1), 60.0)
        for _ in range(warmup):
            await c.wait(await c.send(0), 10.0)
        lat: list[float] = []
        stop = time.perf_counter() + budget
        while len(lat) < n and time.perf_counter() < stop:
            t0 = time.perf_counter()
            await c.wait(await c.send(len(lat)), 10.0)
            lat.append((time.perf_counter() - t0) * 1000.0)
        return {"lat_ms": lat}
    args = [(i,) for i in range(n)]
    if op != "fill":
        await c.send(-1)  # warm-up: opens the connections
    t0 = time.perf_counter()
    if op == "bulk":
        await c.send_many(args)
    else:
        for (i,) in args:
            await c.send(i)
    return {"seconds": time.perf_counter() - t0}


def main(argv: list[str]) -> None:
    name, op, n = argv[0], argv[1], int(argv[2])
    warmup = int(argv[3]) if len(argv) > 3 else 0
    budget = float(argv[4]) if len(argv) > 4 else 1e9
    if op == "info":
        peer = peers.load(name).PEER
        info = {
            "worker": peer.worker(n),
            "concurrency": peer.concurrency,
            "version": importlib.metadata.version(peer.version_of),
        }
        print(json.dumps(info), flush=True)
        return
    if op not in ("enqueue", "bulk", "fill", "roundtrip"):
        raise SystemExit(f"unknown op {op!r}")
    c = peers.load(name).client()
    if inspect.iscoroutinefunction(c.send):
        out = asyncio.run(run_async(c, op, n, warmup, budget))
    else:
        out = run_sync(c, op, n, warmup, budget)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
