"""Screenshots of the dashboard's main pages for docs/screenshots/, taken on a
``conveyor demo --dashboard`` run (mid-run for the live pages, after it for the rest)
with Debian's chromium through Playwright.

    .venv/bin/python scripts/dashboard_screenshots.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="conveyor-shots-"))
    log = home / "demo.log"
    base = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "demo", "-n", "6000", "--dashboard",
             "--dashboard-port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, CONVEYOR_HOME=str(home)),
            start_new_session=True,
        )
    try:
        while "Dashboard:" not in log.read_text():
            time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless=new"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            time.sleep(6)  # mid-run: charts with a few bars, workers busy
            for name, path in (("overview", "/"), ("workers", "/workers"), ("queues", "/queues")):
                page.goto(base + path)
                page.wait_for_timeout(500)
                page.screenshot(path=str(OUT / f"{name}.png"))
            while "stays open" not in log.read_text():
                time.sleep(0.5)
            page.goto(base + "/tasks?state=FAILURE")
            page.wait_for_timeout(300)
            first = page.locator("#task-table tbody tr[data-task] a").first
            failed = first.get_attribute("href") if first.count() else None
            page.goto(base + "/tasks")
            page.wait_for_timeout(300)
            page.screenshot(path=str(OUT / "tasks.png"))
            if failed:
                page.goto(base + failed)
                page.wait_for_timeout(300)
                page.screenshot(path=str(OUT / "task.png"))
            page.goto(base + "/tasks?name=conveyor.demo.tasks.summarize")
            page.wait_for_timeout(300)
            step = page.locator("#task-table tbody tr[data-task] a").first
            if step.count():
                page.goto(base + str(step.get_attribute("href")))
                page.wait_for_timeout(300)
                page.screenshot(path=str(OUT / "workflow.png"))
            page.goto(base + "/beat")
            page.screenshot(path=str(OUT / "beat.png"))
            browser.close()
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
