"""Tasks for bench/cluster_bench.py: the broker is CLUSTER_BENCH_BROKER (a redis+cluster://
or redis:// URL); each task INCRs a counter on CLUSTER_BENCH_COUNTER (a plain Redis of
the bench's own, the same for both runs, so the task body costs the same)."""

from __future__ import annotations

import os

import redis

from conveyor import Conveyor

app = Conveyor("clusterbench", broker=os.environ["CLUSTER_BENCH_BROKER"])
app.conf.task_ignore_result = True

_client: redis.Redis | None = None
_pid = 0


@app.task
def bump(i: int) -> None:
    global _client, _pid
    if _client is None or _pid != os.getpid():
        _client = redis.Redis.from_url(os.environ["CLUSTER_BENCH_COUNTER"])
        _pid = os.getpid()
    _client.incr("bench:counter")
