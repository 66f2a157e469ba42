"""Workers on RabbitMQ: the seed scenario (a Celery app with ``broker='amqp://...'``,
one import changed), results and coordination in Redis, and the crashes: a SIGKILLed
worker's tasks run again at once, a hard time limit is not redelivered forever.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from conveyor import chain, chord, group
from conveyor.exceptions import ChordError, ConfigurationError, TimeLimitExceeded
from conveyor.result import AsyncResult
from conveyor.stores import transport_from_url

from ..apps import amqp_seed
from ..certs import issue
from ..support import wait_for
from ..support_rabbitmq import RabbitNode

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.amqp_seed"


def runs(redis_url: str, key: str) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = redis.Redis.from_url(redis_url).hgetall(f"runs:{key}")
    return found


def test_celery_app_on_rabbitmq_runs_tasks_workflows_and_countdowns(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "2", env=seed)
    assert amqp_seed.add.delay(2, 3).get(timeout=20) == 5
    started = time.time()
    later = amqp_seed.add.apply_async((1, 1), countdown=1)
    assert later.get(timeout=20) == 2
    assert time.time() - started >= 1.0
    assert chain(amqp_seed.add.s(1, 2), amqp_seed.add.s(10)).delay().get(timeout=20) == 13
    header = group(amqp_seed.add.s(i, i) for i in range(5))
    assert chord(header)(amqp_seed.tsum.s()).get(timeout=30) == 20
    urgent = amqp_seed.add.apply_async((4, 4), priority=0)
    assert urgent.get(timeout=20) == 8


@pytest.mark.parametrize("pool", ["asyncio", "threads", "gevent"])
def test_every_pool_runs_tasks_and_stores_results_on_rabbitmq(
    seed: dict[str, str], spawn_worker: Callable[..., object], pool: str
) -> None:
    """Results ride behind the acks on each pool's consumer (the asyncio pool's feeder
    owns it and the event loop posts to it; threads each own one; gevent patches the
    sockets the results link writes on)."""
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-P", pool, "-c", "8", env=seed)
    sent = [amqp_seed.add.delay(i, i) for i in range(60)]
    expected = [2 * i for i in range(60)]
    if pool != "gevent":  # a green pool dead-letters async def tasks (test_green_pools)
        sent += [amqp_seed.async_add.delay(i, 1) for i in range(20)]
        expected += [i + 1 for i in range(20)]
    assert [r.get(timeout=30) for r in sent] == expected


def test_a_sigkilled_workers_task_runs_again_at_once(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    first = spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "1", env=seed)
    result = amqp_seed.record.delay("killed", 2.0)
    wait_for(lambda: runs(seed["AMQP_SIDE_URL"], "killed"), 20, what="the task to start")
    first.kill_group(signal.SIGKILL)  # type: ignore[attr-defined]
    killed_at = time.monotonic()
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "1", env=seed)
    assert result.get(timeout=30) == result.id
    # it ran again (twice in all), as soon as the new worker was up: no lease to expire
    assert list(runs(seed["AMQP_SIDE_URL"], "killed").values()) == [b"2"]
    assert time.monotonic() - killed_at < 20


def test_a_hard_time_limit_is_failed_once_not_redelivered(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "1", env=seed)
    result: AsyncResult = amqp_seed.overrun.delay("limit")
    with pytest.raises(Exception, match="time limit"):
        result.get(timeout=30)
    time.sleep(3)  # the killed child's message came back; it must not run again
    assert list(runs(seed["AMQP_SIDE_URL"], "limit").values()) == [b"1"]
    assert result.state == "FAILURE"


def test_the_hard_limit_kills_the_child_of_the_overdue_task_not_a_namesake(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    """Each child has its own AMQP connection, so both children's first deliveries carry
    the same delivery tag: the supervisor must kill the child running the overdue task,
    not the first child holding that tag."""
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "2", env=seed)
    innocent: AsyncResult = amqp_seed.record.delay("innocent", 4.0)
    wait_for(lambda: runs(seed["AMQP_SIDE_URL"], "innocent"), 20, what="the first task")
    guilty: AsyncResult = amqp_seed.overrun.delay("guilty")
    with pytest.raises(TimeLimitExceeded):
        guilty.get(timeout=20)
    assert innocent.get(timeout=20) == innocent.id
    assert list(runs(seed["AMQP_SIDE_URL"], "innocent").values()) == [b"1"]


def test_a_header_task_killed_at_its_time_limit_fails_the_chord_on_rabbitmq(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    """The supervisor has no message body on AMQP (no leases): the redelivered message
    of the killed task settles its workflow step, so the chord completes (failed, with
    a ChordError) and a chain behind a killed task fails, instead of waiting forever."""
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "2", env=seed)
    result = chord([amqp_seed.add.s(1, 1), amqp_seed.overrun.si("chord")], amqp_seed.tsum.s())()
    with pytest.raises(TimeLimitExceeded):  # the header task's own error, as Celery's
        result.get(timeout=20)
    error = result.get(timeout=20, propagate=False)
    assert isinstance(error, ChordError) and "TimeLimitExceeded" in str(error)
    flow = chain(amqp_seed.overrun.si("chain"), amqp_seed.add.s(1))()
    with pytest.raises(TimeLimitExceeded):
        flow.get(timeout=20)
    assert [list(runs(seed["AMQP_SIDE_URL"], key).values()) for key in ("chord", "chain")] == [
        [b"1"], [b"1"]
    ]


def test_amqp_without_a_result_backend_is_a_clear_error(amqp_url: str) -> None:
    from conveyor import Conveyor
    from conveyor.exceptions import ConfigurationError

    app = Conveyor("lonely", broker=amqp_url)
    with pytest.raises(ConfigurationError, match="result_backend"):
        _ = app.backend


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "-A", APP, *args],
        env=environment, capture_output=True, text=True, timeout=60, check=False,
    )


def test_status_purge_and_dlq_work_on_rabbitmq(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    for i in range(3):
        amqp_seed.add.delay(i, i)
    amqp_seed.add.apply_async((9, 9), countdown=600)  # waits in the delay levels
    shown = cli(seed, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    depth = {q["name"]: q["ready"] for q in report["queues"]}
    assert depth == {"celery": 3}
    assert report["scheduled_all_queues"] == 1
    table = cli(seed, "status")
    assert "for all queues together: 1" in table.stdout
    purged = cli(seed, "purge", "-f")
    assert purged.returncode == 0, purged.stderr
    assert "Purged 4 messages" in purged.stdout  # the scheduled one too
    assert json.loads(cli(seed, "status", "--json").stdout)["scheduled_all_queues"] == 0
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "1", env=seed)
    amqp_seed.app.broker.publish("celery", [b"not a message"])
    coordinator = amqp_seed.app.coordinator
    wait_for(lambda: coordinator.dead_letters(), 20, what="the bad message's dead letter")
    (letter,) = coordinator.dead_letters()
    letters = cli(seed, "dlq", "list")
    assert letters.returncode == 0, letters.stderr
    assert letter.id in letters.stdout


def test_inspect_and_control_reach_workers_on_rabbitmq(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    """The control mailbox lives in the coordinator's store (Redis here)."""
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "1", "-n", "rabbit@%h", env=seed)
    answers = amqp_seed.app.control.ping(timeout=5.0)
    assert len(answers) == 1
    (name,) = answers[0]
    assert name.startswith("rabbit@")
    # The supervisor cannot read a child's AMQP delivery, but names what it runs.
    running = amqp_seed.record.delay("inspected", 3.0)

    def active() -> list[dict[str, object]]:
        answers = amqp_seed.app.control.inspect(timeout=5.0).active() or {}
        return list(answers.get(name, []))

    wait_for(lambda: len(active()) == 1, 15, what="the running task listed")
    (task,) = active()
    assert task["id"] == running.id and task["name"] == "tests.apps.amqp_seed.record"
    # ETA messages wait in delay queues shared by every queue: said, not an empty list
    scheduled = amqp_seed.app.control.inspect(timeout=5.0).scheduled()
    assert scheduled == {
        name: {"error": "the broker (amqp) cannot list the messages it holds for their ETA"}
    }


def test_the_event_stream_works_on_rabbitmq(
    seed: dict[str, str], spawn_worker: Callable[..., object]
) -> None:
    """-E events are stored in the coordinator's store (Redis here); conveyor events
    reads them."""
    spawn_worker(APP, seed["CONVEYOR_BROKER_URL"], "-c", "1", "-E", env=seed)
    assert amqp_seed.add.delay(20, 22).get(timeout=20) == 42

    def succeeded() -> bool:
        dumped = cli(seed, "events", "--dump", "--once")
        assert dumped.returncode == 0, dumped.stderr
        kinds = [json.loads(line)["type"] for line in dumped.stdout.splitlines() if line]
        return "task-succeeded" in kinds

    wait_for(succeeded, 20, what="the task-succeeded event in the stream")


def test_amqps_with_a_client_certificate_end_to_end(
    tmp_path: Path, redis_url: str, spawn_worker: Callable[..., object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """amqps:// to a node that asks for a client certificate (Celery's broker_use_ssl):
    a worker runs a task and a countdown over TLS; a CA that does not match is a
    ConfigurationError at once, not retried."""
    ca = issue("conveyor test CA", ca=True)
    ca.write(tmp_path, "ca")
    issue("stranger CA", ca=True).write(tmp_path, "stranger-ca")
    issue("127.0.0.1", issuer=ca, ip="127.0.0.1").write(tmp_path, "server")
    issue("client", issuer=ca).write(tmp_path, "client")
    (tmp_path / "node").mkdir()
    node = RabbitNode(tmp_path / "node", tls_dir=tmp_path)
    node.start()
    try:
        env = {
            "CONVEYOR_BROKER_URL": node.tls_url,
            "CONVEYOR_RESULT_BACKEND": redis_url,
            "AMQP_SIDE_URL": redis_url,
            "AMQP_TLS_DIR": str(tmp_path),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = amqp_seed.app
        app.conf.broker_url, app.conf.result_backend = node.tls_url, redis_url
        app.conf.broker_use_ssl = {
            "ca_certs": str(tmp_path / "ca.pem"),
            "certfile": str(tmp_path / "client.pem"),
            "keyfile": str(tmp_path / "client.key"),
            "cert_reqs": ssl.CERT_REQUIRED,
        }
        spawn_worker(APP, node.tls_url, "-c", "1", env=env)
        assert amqp_seed.add.delay(20, 22).get(timeout=20) == 42
        assert amqp_seed.add.apply_async((1, 2), countdown=0.5).get(timeout=20) == 3
        stranger = {**app.conf.broker_use_ssl, "ca_certs": str(tmp_path / "stranger-ca.pem")}
        started = time.monotonic()
        with pytest.raises(ConfigurationError, match="certificate verification failed"):
            transport_from_url(node.tls_url, use_ssl=stranger).publish("q", [b"x"])
        assert time.monotonic() - started < 5
        app.close()
        app.conf.broker_use_ssl = None
    finally:
        node.close()
