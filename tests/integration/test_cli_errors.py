"""Honest CLI errors: non-zero exits for tasks that did not succeed, an import error in
the user's app shown with its file and line, and a worker that has none of the user's
tasks says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, states

from ..support import TESTS_ROOT, WorkerProcess, run_cli, wait_for

pytestmark = pytest.mark.redis


def test_call_wait_and_result_exit_non_zero_when_rejected(
    redis_url: str, spawn_worker: Any
) -> None:
    spawn_worker("tests.apps.basic", redis_url, "-c", "1")
    called = run_cli(redis_url, "-A", "tests.apps.basic", "call", "no.such.task",
                     "--wait", "--timeout", "10")
    assert called.returncode == 1
    task_id = called.stdout.strip()
    assert called.stderr == (
        f"task {task_id} REJECTED: MessageError: unknown task name 'no.such.task'\n"
    )
    shown = run_cli(redis_url, "-A", "tests.apps.basic", "result", task_id)
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["state"] == states.REJECTED


def test_result_exits_non_zero_when_revoked(redis_url: str, spawn_worker: Any) -> None:
    spawn_worker("tests.apps.basic", redis_url, "-c", "1")
    app = Conveyor("revoker", broker=redis_url, set_as_current=False)
    # It expires before it is due, so the worker revokes it instead of running it.
    sent = app.send_task("tests.apps.basic.add", args=[1, 2], countdown=0.5, expires=0.1)
    wait_for(lambda: sent.state == states.REVOKED, 10, what="the task to be revoked")
    app.close()
    shown = run_cli(redis_url, "-A", "tests.apps.basic", "result", sent.id)
    assert shown.returncode == 1
    assert json.loads(shown.stdout)["state"] == states.REVOKED
    succeeded = run_cli(redis_url, "-A", "tests.apps.basic", "call", "tests.apps.basic.add",
                        "--args", "[1, 2]", "--wait", "--timeout", "10")
    ok_id = succeeded.stdout.split()[0]
    assert run_cli(redis_url, "-A", "tests.apps.basic", "result", ok_id).returncode == 0


@pytest.fixture
def broken_app(tmp_path: Path) -> Path:
    """A user's app whose tasks module fails on line 4 when imported."""
    (tmp_path / "brokenproj").mkdir()
    (tmp_path / "brokenproj" / "__init__.py").write_text(
        "from conveyor import Conveyor\n"
        "app = Conveyor('brokenproj')\n"
        "from . import tasks  # noqa\n"
    )
    (tmp_path / "brokenproj" / "tasks.py").write_text(
        "from . import app\n\n\nvalue = undefined_name + 1\n"
    )
    return tmp_path


def _conveyor(directory: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CONVEYOR_BROKER_URL=url)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_ROOT.parent), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=env, cwd=directory, capture_output=True, text=True, timeout=30,
    )


def test_an_import_error_in_the_app_names_file_and_line(broken_app: Path, redis_url: str) -> None:
    done = _conveyor(broken_app, redis_url, "-A", "brokenproj", "worker", "-c", "1")
    assert done.returncode == 2
    assert done.stderr == (
        "Error: module 'brokenproj' failed to import: NameError: name 'undefined_name' is "
        f"not defined ({os.path.join('brokenproj', 'tasks.py')}, line 4; the traceback at "
        "-l debug)\n"
    )
    debug = _conveyor(broken_app, redis_url, "-A", "brokenproj", "worker", "-l", "debug")
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert 'tasks.py", line 4, in <module>' in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("Error: module 'brokenproj'")


def test_a_worker_without_an_app_warns_it_has_none_of_your_tasks(
    redis_url: str, tmp_path: Path
) -> None:
    env = dict(os.environ, CONVEYOR_BROKER_URL=redis_url)
    worker = WorkerProcess(
        [sys.executable, "-m", "conveyor", "worker", "-l", "info", "-c", "1"],
        env, tmp_path / "worker.log",
    )
    worker.start()
    try:
        worker.wait_ready()
        assert "no app given (-A): this worker knows only conveyor's built-in tasks" in (
            worker.output()
        )
    finally:
        worker.stop()


def test_a_worker_with_an_unsupported_result_backend_stops_at_start(tmp_path: Path) -> None:
    done = run_cli(f"sqlite:///{tmp_path / 'broker.db'}", "-A", "tests.apps.basic",
                   "--result-backend", "rpc://", "worker", "-c", "1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: unsupported result backend 'rpc://': expected redis://, rediss://, unix://, "
        "sentinel://, redis+cluster://, sqlite:///path or memory:// (conveyor has no rpc://, "
        "database, Django or cache backends)"
    )


def test_call_with_a_message_over_the_size_limit_is_one_line(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_MAX_MESSAGE_SIZE", "200")
    done = run_cli(redis_url, "-A", "tests.apps.hostile", "call", "tests.apps.hostile.echo",
                   "--args", json.dumps(["x" * 500]))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "over broker_max_message_size (200)" in lines[0]
