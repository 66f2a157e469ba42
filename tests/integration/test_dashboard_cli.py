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


def test_a_token_opens_the_dashboard_to_a_script_and_to_a_browser(
    redis_url: str, tmp_path: Path
) -> None:
    token = "s3cret-token-0123456789"
    port = free_port()
    env = dict(os.environ, CONVEYOR_BROKER_URL=redis_url,
               PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        board = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "-A", "tests.apps.board", "dashboard",
             "--port", str(port), "--token", token, "--url-prefix", "/q",
             "--db", str(tmp_path / "history.sqlite3")],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}/q"
    try:
        wait_for(lambda: "bearer token" in log.read_text(), 30, interval=0.1,
                 what="the dashboard to listen")
        with httpx.Client(timeout=10) as http:
            wait_for(lambda: http.get(base + "/").status_code == 401, 10, what="a 401")
            refused = http.get(base + "/")
            assert refused.headers["www-authenticate"].startswith("Bearer")
            wrong = http.get(base + "/", headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401
            assert http.get(base + "/tasks?token=wrong").status_code == 401
            script = http.get(base + "/workers", headers={"Authorization": f"Bearer {token}"})
            assert script.status_code == 200 and "Workers" in script.text
        with httpx.Client(timeout=10) as browser:  # keeps cookies, as a browser does
            first = browser.get(base + f"/tasks?state=SUCCESS&token={token}")
            assert first.status_code == 303
            assert first.headers["location"] == "/q/tasks?state=SUCCESS"  # the token is gone
            cookie = first.headers["set-cookie"]
            assert token not in cookie and "HttpOnly" in cookie and "Path=/q" in cookie
            assert browser.get(base + "/tasks?state=SUCCESS").status_code == 200
            assert browser.get(base + "/").status_code == 200
    finally:
        os.killpg(board.pid, signal.SIGTERM)
        board.wait(30)
