"""Fixtures for the dashboard's browser tests: Debian's chromium driven by Playwright
(its own browser download does not work here), and a ``conveyor dashboard`` process of
the test's own on a free port, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from ..support import free_port, wait_for

TESTS = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
APP = "tests.apps.board"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


# Module scope, not session: Playwright's sync API runs an event loop in the main
# thread while it is open, so a session-wide browser would make every later
# asyncio.run() in the suite (and Django's async-context check) fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


class DashboardProcess:
    def __init__(self, broker_url: str, tmp_path: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = dict(os.environ)
        environment["CONVEYOR_BROKER_URL"] = broker_url
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS.parent), environment.get("PYTHONPATH", "")]
        )
        environment.update(env or {})
        self.log_path = tmp_path / f"dashboard-{self.port}.log"
        self.command = [
            sys.executable, "-m", "conveyor", "-A", APP, "dashboard", "--port", str(self.port),
            "--db", str(tmp_path / "history.sqlite3"), *args,
        ]
        self.env = environment
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DashboardProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"dashboard exited early:\n{self.output()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 20, interval=0.05, what="dashboard listening")
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        self._log.close()
        self.process = None


@pytest.fixture
def spawn_dashboard(tmp_path: Path) -> Iterator[Any]:
    """``spawn_dashboard(broker_url, "--basic-auth", "a:b")``: a running dashboard."""
    started: list[DashboardProcess] = []

    def spawn(broker_url: str, *args: str, env: dict[str, str] | None = None) -> DashboardProcess:
        board = DashboardProcess(broker_url, tmp_path, *args, env=env)
        started.append(board)
        return board.start()

    yield spawn
    for board in started:
        board.stop()
