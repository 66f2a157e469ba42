"""``conveyor events``: the rich view (rates, failures, latest tasks, counts per task
name) against a real worker and workload, printed once (``--once``) and live on a
terminal (a pty), with the numbers it shows checked."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import Conveyor

from ..support import TESTS_ROOT, run_cli

APP = "tests.apps.observed"
ADD = "tests.apps.observed.add"
FAIL = "tests.apps.observed.fail"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
COLUMNS = "200"  # wide enough for a task id in the "Latest" table


@pytest.fixture
def client(worker_broker_url: str) -> Iterator[Conveyor]:
    app = Conveyor("client", broker=worker_broker_url)
    try:
        yield app
    finally:
        app.close()


def _workload(client: Conveyor) -> tuple[list[str], str]:
    """Three adds and one failure; returns the add ids and the failure's id."""
    adds = [client.send_task(ADD, (i, 1)) for i in range(3)]
    assert [r.get(timeout=20) for r in adds] == [1, 2, 3]
    failed = client.send_task(FAIL, ("boom",))
    with pytest.raises(ValueError):
        failed.get(timeout=20)
    return [r.id for r in adds], failed.id


def _row(text: str, name: str) -> list[int]:
    """The counts (received, started, succeeded, failed, retried) in ``name``'s row of
    the last frame in ``text``."""
    rows = re.findall(re.escape(name) + r"\s*[│|]" + r"\s*(\d+)\s*[│|]" * 5, text)
    assert rows, f"no row for {name} in:\n{text}"
    return [int(n) for n in rows[-1]]


def _check_view(text: str, add_ids: list[str], fail_id: str) -> None:
    assert _row(text, ADD) == [3, 3, 3, 0, 0]
    assert _row(text, FAIL) == [1, 1, 0, 1, 0]
    # 4 tasks ended in the last 10 s (the workload takes a second or two)
    assert re.findall(r"Tasks \((\d+\.\d)/s over the last 10 s\)", text)[-1] == "0.4"
    latest = text[text.rindex("Latest") : text.rindex("Failures")]
    for task_id in [*add_ids, fail_id]:
        assert task_id in latest
    failures = text[text.rindex("Failures") :]
    assert "ValueError('boom')" in failures
    assert add_ids[0] not in failures


def test_the_view_printed_once_after_a_workload(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1", "-E")
    add_ids, fail_id = _workload(client)
    time.sleep(0.5)  # the worker's flusher writes every 200 ms
    monkeypatch.setenv("COLUMNS", COLUMNS)  # run_cli passes the environment on
    done = run_cli(worker_broker_url, "-A", APP, "events", "--once")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Latest") == 1  # one frame
    _check_view(done.stdout, add_ids, fail_id)


@pytest.mark.parametrize("worker_broker_url", ["redis"], indirect=True)
def test_the_live_view_on_a_terminal_follows_a_workload(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "1", "-E")
    primary, secondary = pty.openpty()
    env = dict(os.environ, CONVEYOR_BROKER_URL=worker_broker_url, COLUMNS=COLUMNS,
               LINES="60", TERM="xterm-256color")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_ROOT.parent), env.get("PYTHONPATH", "")])
    view = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "-A", APP, "events"],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, cwd=TESTS_ROOT.parent,
        start_new_session=True,
    )
    os.close(secondary)
    screen = ""

    def read_for(seconds: float) -> None:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.1)
            if ready:
                try:
                    screen += ANSI.sub("", os.read(primary, 65536).decode(errors="replace"))
                except OSError:  # the view exited and closed the terminal
                    return

    try:
        read_for(2.0)  # running, and showing nothing yet: the workload comes after
        assert view.poll() is None, screen
        add_ids, fail_id = _workload(client)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "ValueError('boom')" not in screen:
            read_for(0.5)
        read_for(0.6)  # one more refresh (4 a second) with everything in
        _check_view(screen, add_ids, fail_id)
        view.send_signal(signal.SIGINT)
        assert view.wait(10) == 0
    finally:
        if view.poll() is None:
            view.kill()
            view.wait()
        os.close(primary)
