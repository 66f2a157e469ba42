"""An unreachable broker is one line: for ``.delay()``, for every CLI command, and for a
worker, which waits for the broker (with backoff) and starts working once it is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.exceptions import BrokerUnavailable

from ..support import RedisServer, free_port, run_cli, wait_for

pytestmark = pytest.mark.redis


@pytest.fixture
def nowhere() -> tuple[str, str]:
    """A Redis URL with a password where nothing listens, and its one-line error."""
    port = free_port()
    return (
        f"redis://:s3cret@127.0.0.1:{port}/0",
        f"cannot reach the broker at redis://:***@127.0.0.1:{port}/0: connection refused",
    )


def test_delay_raises_broker_unavailable_naming_the_masked_url(nowhere: tuple[str, str]) -> None:
    url, line = nowhere
    app = Conveyor("unreachable", broker=url, set_as_current=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(BrokerUnavailable) as caught:
        add.delay(1, 2)
    assert str(caught.value) == line
    assert isinstance(caught.value, ConnectionError)
    assert "s3cret" not in caught.value.url and caught.value.url in line
    app.close()


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["call", "tests.apps.basic.add", "--args", "[1, 2]"],
        ["result", "some-id"],
        ["purge", "-f"],
        ["revoke", "some-id"],
        ["dlq", "list"],
        ["dlq", "show", "some-id"],
        ["dlq", "replay", "--all"],
        ["dlq", "purge", "-f"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_every_cli_command_prints_one_line_and_fails(
    command: list[str], nowhere: tuple[str, str]
) -> None:
    url, line = nowhere
    if command[0] == "result":  # it reads the result backend (at the same URL here)
        line = line.replace("the broker", "the result backend")
    done = run_cli(url, "-A", "tests.apps.basic", *command)
    assert done.returncode == 1
    assert done.stderr == line + "\n"
    assert "Traceback" not in done.stdout


def test_a_worker_waits_for_the_broker_then_works(
    nowhere: tuple[str, str], tmp_path: Path, spawn_worker: Any
) -> None:
    url, _ = nowhere
    worker = spawn_worker(
        "tests.apps.basic", url.replace(":s3cret@", ""), "-c", "1", wait=False
    )
    wait_for(lambda: "waiting for the broker" in worker.output(), 10, what="a waiting line")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = RedisServer(tmp_path, port)
    server.start()
    try:
        app = Conveyor("late", broker=server.url, set_as_current=False)
        result = app.send_task("tests.apps.basic.add", args=[2, 3])
        assert result.get(timeout=20) == 5
        app.close()
        output = worker.output()  # before the server stops (then it is "connection lost")
    finally:
        worker.stop()
        server.stop()
    assert "connection lost" not in output
    assert "Traceback" not in output
    waiting = [text for text in output.splitlines() if "waiting for the broker" in text]
    assert waiting and all(f"127.0.0.1:{port}/0: connection refused" in t for t in waiting)


@pytest.mark.parametrize(
    "command", [["status"], ["call", "tests.apps.basic.add", "-a", "[1, 2]"], ["dlq", "list"]]
)
def test_an_sqlite_file_that_cannot_be_opened_is_one_line(command: list[str]) -> None:
    url = "sqlite:////proc/no-such-dir/broker.db"  # /proc takes no new directories
    done = run_cli(url, "-A", "tests.apps.basic", *command)
    assert done.returncode == 1
    assert done.stderr == f"cannot open the SQLite database at {url}: no such file or directory\n"
    app = Conveyor("sqlite-nowhere", broker=url, set_as_current=False)
    with pytest.raises(BrokerUnavailable, match="cannot open the SQLite database"):
        app.send_task("tests.apps.basic.add", args=[1, 2])
