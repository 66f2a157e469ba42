"""`conveyor revoke` and `conveyor dlq ...` against a real Redis and worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor import states
from conveyor.exceptions import TaskRevokedError
from conveyor.message import Envelope, encode_envelope

from ..support import wait_for

ROOT = Path(__file__).parent.parent.parent
APP = "tests.apps.basic"


def conveyor(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONVEYOR_BROKER_URL=redis_url)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "-A", APP, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def basic(worker_broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CONVEYOR_BROKER_URL", worker_broker_url)
    from tests.apps import basic as module

    module.app.close()
    module._client = None
    return module


def test_revoke_command(basic: Any, worker_broker_url: str, spawn_worker: Any) -> None:
    redis_url = worker_broker_url
    result = basic.add.delay(1, 2)
    out = conveyor(redis_url, "revoke", result.id)
    assert out.returncode == 0, out.stderr
    assert "1 task revoked" in out.stdout
    spawn_worker(APP, redis_url, "-c", "1")
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert result.state == states.REVOKED


def test_dlq_list_show_replay_purge(basic: Any, worker_broker_url: str, spawn_worker: Any) -> None:
    redis_url = worker_broker_url
    dlq = basic.app.coordinator
    good = Envelope(id="replayed-task", task="tests.apps.basic.add", args=[20, 22])
    dlq.dead_letter(encode_envelope(good), "celery", "parked by hand")
    dlq.dead_letter(b"\xff not a message", "celery", "undecodable")

    listed = conveyor(redis_url, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "parked by hand" in listed.stdout and "undecodable" in listed.stdout
    letter = next(d for d in dlq.dead_letters() if d.reason == "parked by hand")

    shown = conveyor(redis_url, "dlq", "show", letter.id)
    assert "tests.apps.basic.add" in shown.stdout and "parked by hand" in shown.stdout
    missing = conveyor(redis_url, "dlq", "show", "nope")
    assert missing.returncode != 0 and "no dead letter" in missing.stderr

    usage = conveyor(redis_url, "dlq", "replay")
    assert usage.returncode == 2 and "--all" in usage.stderr

    replayed = conveyor(redis_url, "dlq", "replay", letter.id)
    assert replayed.returncode == 0, replayed.stderr
    spawn_worker(APP, redis_url, "-c", "1")
    assert basic.app.AsyncResult("replayed-task").get(timeout=10) == 42
    assert [d.reason for d in dlq.dead_letters()] == ["undecodable"]

    purged = conveyor(redis_url, "dlq", "purge", "-f")
    assert "Deleted 1 dead letter" in purged.stdout
    wait_for(lambda: dlq.dead_letters() == [], 5, what="empty dlq")
