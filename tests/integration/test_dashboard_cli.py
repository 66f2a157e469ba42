"""``conveyor dashboard`` and ``conveyor demo --dashboard`` from the command line (the
pages themselves are tested in a browser: tests/browser)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from ..support import free_port, run_cli, wait_for

TESTS = Path(__file__).resolve().parents[1]


def test_without_basic_auth_it_listens_on_loopback_only(redis_url: str) -> None:
    done = run_cli(redis_url, "-A", "tests.apps.board", "dashboard", "--address", "0.0.0.0")
    assert done.returncode == 2
    assert "127.0.0.1 only" in done.stderr
    done = run_cli(redis_url, "-A", "tests.apps.board", "flower", "--basic_auth", "nopassword")
    assert done.returncode == 2
    assert "expected user:password" in done.stderr


def test_demo_leaves_the_dashboard_open_on_its_run(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, CONVEYOR_HOME=str(tmp_path / "home"))
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "demo", "-n", "60", "--dashboard",
             "--dashboard-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        try:
            wait_for(lambda: "stays open" in log.read_text(), 90, interval=0.2,
                     what="the demo's run over")
            page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
            processed = re.search(r"<b>([\d,]+)</b><span>Processed</span>", page)
            assert processed is not None, page
            assert int(processed.group(1).replace(",", "")) >= 60
            assert "demo-cpu-" in page and "demo-io-" in page
        finally:
            os.killpg(demo.pid, signal.SIGTERM)
            code = demo.wait(30)
    assert code == 0, log.read_text()
