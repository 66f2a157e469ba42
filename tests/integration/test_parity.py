"""Celery parity with real workers (issue 10), on Redis and on SQLite: each test holds
conveyor to the result Celery documents for the same code.

The tests share one worker per broker (started once per module) and tell their
records apart by a key of their own.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from conveyor import chain, group

from ..apps import parity
from ..apps.parity import read_log
from ..support import RedisServer, WorkerProcess, connected

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.parity"
TESTS = Path(__file__).parent.parent


@dataclass
class Cluster:
    kind: str
    url: str
    records: Path

    def log(self, key: str) -> list[str]:
        return read_log(self.records, key)


def start_worker(url: str, records: Path, log: Path, *args: str) -> WorkerProcess:
    environment = dict(os.environ)
    environment.update(
        CONVEYOR_BROKER_URL=url,
        PARITY_RECORD_DIR=str(records),
        PYTHONPATH=os.pathsep.join([str(TESTS.parent), environment.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "conveyor", "-A", APP, "worker", "-l", "info", *args]
    worker = WorkerProcess(command, environment, log)
    worker.start()
    worker.wait_ready()
    return worker


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A worker (prefork, 2 processes) on a broker of this module's own."""
    kind: str = request.param
    directory = tmp_path_factory.mktemp(f"parity-{kind}")
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'conveyor.db'}"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.ensure_running()
        url = f"redis://127.0.0.1:{server.port}/7"
        redis.Redis.from_url(url).flushdb()
    records = directory / "records"
    records.mkdir()
    os.environ["PARITY_RECORD_DIR"] = str(records)
    worker = start_worker(url, records, directory / "worker.log", "-c", "2")
    try:
        with connected(parity.app, url):
            yield Cluster(kind, url, records)
    finally:
        worker.stop()


def key() -> str:
    return uuid.uuid4().hex[:12]


# the two defects ---------------------------------------------------------------------------
def test_group_after_group_runs_the_last_step_once_with_the_list(cluster: Cluster) -> None:
    """Celery upgrades every group followed by a step into a chord: add -> 2; two idents
    -> [2, 2]; two tsums each get [2, 2] -> [4, 4]; the last tsum runs once -> 8."""
    k = key()
    flow = chain(
        parity.add.s(1, 1),
        group(parity.ident.s(), parity.ident.s()),
        group(parity.tsum.s(key=k), parity.tsum.s(key=k)),
        parity.tsum.s(key=k),
    )
    result = flow()
    assert result.get(timeout=30) == 8
    time.sleep(0.3)  # a second run of any step would have logged by now
    runs = sorted(line.split(" ", 2)[2] for line in cluster.log(k))
    assert runs == ["[2, 2]", "[2, 2]", "[4, 4]"]
    ids = [line.split()[1] for line in cluster.log(k)]
    assert len(set(ids)) == 3 and result.id in ids


def test_bytes_arguments_and_results_keep_their_type(cluster: Cluster) -> None:
    blob = bytes(range(256))
    sent = parity.describe.delay(blob, [b"x", bytearray(b"y")], meta={"raw": b"\x00"}, text="t")
    assert sent.get(timeout=20) == [["bytes", "list"], {"meta": "dict", "text": "str"}]
    assert parity.give.delay(blob).get(timeout=20) == blob
    assert parity.give.delay({"nested": [b"\xff"]}).get(timeout=20) == {"nested": [b"\xff"]}
    # A dict that only looks like a marker stays a dict.
    lookalike = {"__type__": "decimal", "__value__": "1.5"}
    assert parity.give.delay(lookalike).get(timeout=20) == lookalike
    # Through a chain's partial arguments and the previous step's result.
    flow = chain(parity.give.s(b"abc"), parity.describe.s(b"def"))
    assert flow().get(timeout=20) == [["bytes", "bytes"], {}]
