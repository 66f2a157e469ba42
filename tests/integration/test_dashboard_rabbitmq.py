"""The dashboard on RabbitMQ: the broker holds the queues, the Redis beside the results
holds the events and the mailbox (issue 15: the dashboard works with RabbitMQ wherever
it works with Redis). The real server on a thread, read over HTTP; a real worker with -E."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor, chord
from conveyor.dashboard.server import DashboardOptions, serve_in_thread
from conveyor.result import GroupResult

from ..support import free_port, wait_for

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.board"


def _stat(page: str, label: str) -> int:
    found = re.search(rf"<b>([\d,]+)</b><span>{label}</span>", page)
    assert found is not None, f"no {label} count on the page"
    return int(found.group(1).replace(",", ""))


def test_the_dashboard_shows_a_workload_run_on_rabbitmq(
    amqp_url: str, redis_url: str, spawn_worker: Callable[..., object], tmp_path: Path
) -> None:
    spawn_worker(
        APP,
        amqp_url,
        "-c",
        "2",
        "-E",
        "-n",
        "rabbit-w1@test",
        env={"CONVEYOR_RESULT_BACKEND": redis_url},
    )
    app = Conveyor("client", broker=amqp_url, backend=redis_url)
    try:
        assert [app.send_task(f"{APP}.add", (i, i)).get(timeout=20) for i in range(5)] == [
            0,
            2,
            4,
            6,
            8,
        ]
        with pytest.raises(ValueError):
            app.send_task(f"{APP}.fail", ("boom",)).get(timeout=20)
        header = [app.signature(f"{APP}.add", args=(i, 1)) for i in range(3)]
        body = chord(header, app.signature(f"{APP}.tsum")).apply_async()
        assert body.get(timeout=30) == 6
        assert isinstance(body.parent, GroupResult)

        options = DashboardOptions(port=free_port(), db=tmp_path / "history.sqlite3")
        served = serve_in_thread(app, options)
        try:
            http = httpx.Client(base_url=served.url.rstrip("/"), timeout=10)
            # 5 adds, 3 header adds, the chord's join and its body succeeded; one failed.
            wait_for(
                lambda: _stat(http.get("/").text, "Processed") == 10,
                15,
                what="the ten successes in the history",
            )
            overview = http.get("/").text
            assert _stat(overview, "Failed") == 1
            assert _stat(overview, "Workers") == 1

            failed = http.get("/tasks?state=FAILURE").text
            assert failed.count("data-task=") == 1 and "boom" in failed

            queues = http.get("/queues").text  # the broker's queue, its consumer from the mailbox
            assert re.search(r'href="/tasks\?queue=celery">celery</a>', queues), queues
            assert 'title="rabbit-w1@test"' in queues

            workers = http.get("/workers").text  # inspect over the coordinator's mailbox
            assert "rabbit-w1@test" in workers and "prefork" in workers

            member = http.get(f"/tasks/{body.parent.results[0].id}").text
            assert "chord header (3)" in member and f"/tasks/{body.id}" in member
            http.close()
        finally:
            served.stop()
    finally:
        app.close()
