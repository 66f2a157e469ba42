"""``conveyor demo`` end to end: real worker processes, a few hundred tasks (webhooks
that are retried and chains among them), a periodic task from the embedded beat, a
summary, exit code 0, and no process left behind; Ctrl-C stops everything it started."""

from __future__ import annotations

import importlib.util
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support import TESTS_ROOT

KINDS = ("sentiment", "thumbnail", "email", "webhook", "chain")
SQLITE_MISSING = importlib.util.find_spec("conveyor.stores.sqlite.transport") is None


def start_demo(*args: str, home: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    for name in ("CONVEYOR_BROKER_URL", "CONVEYOR_RESULT_BACKEND", "CONVEYOR_APP"):
        env.pop(name, None)
    env["CONVEYOR_HOME"] = str(home)  # the demo must not need it, but never touch the real one
    env["COLUMNS"] = "120"
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "demo", *args],
        env=env,
        cwd=TESTS_ROOT.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def leftover_workers(demo_pid: int) -> list[str]:
    """Worker processes of this demo run still alive (their -n names carry its pid)."""
    found = subprocess.run(
        ["pgrep", "-af", f"demo-(cpu|io)-{demo_pid}@"], capture_output=True, text=True
    )
    return found.stdout.splitlines()


def row(output: str, kind: str) -> list[str]:
    """The cells of the summary table's row for ``kind``."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == kind:
            return cells
    raise AssertionError(f"no row {kind!r} in the summary:\n{output}")


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def check_summary(output: str, tasks: int) -> None:
    assert "conveyor demo" in output and "Workers ready" in output
    counts, retries = {}, {}
    for kind in (*KINDS, "all"):
        _, sent, ok, failed, retried, lost, rate, p50, p99 = row(output, kind)
        counts[kind] = number(sent)
        retries[kind] = number(retried)
        assert lost == "0", f"{kind}: {lost} lost\n{output}"
        assert number(ok) + number(failed) == counts[kind]
        assert float(rate.replace(",", "")) > 0
        assert p50.endswith(("ms", "s")) and p99.endswith(("ms", "s"))
    assert counts["all"] == tasks == sum(counts[k] for k in KINDS)
    for kind in ("sentiment", "thumbnail", "webhook", "chain"):
        assert number(row(output, kind)[3]) == 0, f"no {kind} task fails\n{output}"
    # ~30% of the webhook attempts fail: dozens of retries in 300 tasks, none lost.
    assert retries["webhook"] > 0 and retries["all"] == retries["webhook"], output
    assert counts["chain"] > 0
    fired, window = periodic(output)
    assert 0 < fired <= window / 0.5 + 1, output
    assert f"All {tasks:,} tasks came back; none was lost." in output
    assert "conveyor -A tasks worker" in output, "the closing lines say how to go on"


def periodic(output: str) -> tuple[int, float]:
    """How many times beat's heartbeat ran, and in how many seconds."""
    text = " ".join(output.split())  # the console wraps lines
    found = re.search(
        r"heartbeat_report every 0\.5 s .*? it ran (once|[\d,]+ times) in the ([\d.]+) s", text
    )
    assert found, output
    fired = 1 if found.group(1) == "once" else number(found.group(1).split()[0])
    return fired, float(found.group(2))


def run_to_end(*args: str, home: Path, timeout: float = 90) -> str:
    demo = start_demo(*args, home=home)
    try:
        output, _ = demo.communicate(timeout=timeout)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, output
    assert leftover_workers(demo.pid) == []
    return output


@pytest.mark.redis
def test_demo_on_redis(redis_url: str, tmp_path: Path) -> None:
    output = run_to_end("--tasks", "300", "--broker", redis_url, home=tmp_path)
    check_summary(output, 300)
    assert redis_url in output


@pytest.mark.skipif(SQLITE_MISSING, reason="conveyor.stores.sqlite.transport does not import yet")
def test_demo_on_the_default_sqlite_broker(tmp_path: Path) -> None:
    output = run_to_end("--tasks", "300", home=tmp_path)
    check_summary(output, 300)
    database = re.search(r"a fresh SQLite\s+file,\s+(\S+broker\.db)", output)
    assert database, output
    assert not Path(database.group(1)).exists(), "the demo's temporary files are removed"
    assert not any(tmp_path.iterdir()), "CONVEYOR_HOME is not touched"


def read_until(demo: subprocess.Popen[str], marker: str, timeout: float) -> str:
    assert demo.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} after {timeout}s:\n{seen}"
        ready, _, _ = select.select([demo.stdout], [], [], remaining)
        if ready:
            line = demo.stdout.readline()
            assert line, f"the demo exited early:\n{seen}"
            seen += line
    return seen


@pytest.mark.redis
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_the_demo_stops_every_worker(
    signum: int, redis_url: str, tmp_path: Path
) -> None:
    demo = start_demo("--tasks", "1000000", "--broker", redis_url, home=tmp_path)
    try:
        read_until(demo, "Workers ready", timeout=30)
        assert len(leftover_workers(demo.pid)) >= 2, "the workers run"
        time.sleep(0.5)  # tasks are flowing
        demo.send_signal(signum)
        output, _ = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, output
    assert "Interrupted" in output
    assert leftover_workers(demo.pid) == []
