"""The dashboard in a real browser (Debian's chromium through Playwright), against real
workers on the suite's redis-server and on an SQLite file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from conveyor import Conveyor, chain, chord
from conveyor.result import GroupResult

from ..support import wait_for

APP = "tests.apps.board"
ADD = "tests.apps.board.add"
FAIL = "tests.apps.board.fail"
NEEDS_FILE = "tests.apps.board.needs_file"
SLEEP = "tests.apps.board.sleep"
LOGIN = "tests.apps.board.login"


@pytest.fixture
def client(worker_broker_url: str) -> Iterator[Conveyor]:
    app = Conveyor("client", broker=worker_broker_url)
    try:
        yield app
    finally:
        app.close()


def _stat(page: Any, label: str) -> Any:
    return page.locator(f".stat:has(span:text-is('{label}')) b")


def _confirm(page: Any, button: str) -> None:
    page.locator("main").get_by_role("button", name=button, exact=True).click()
    page.locator("#confirm-ok").click()


def test_pages_show_a_known_workload_and_new_tasks_live(
    client: Conveyor, worker_broker_url: str, spawn_worker: Any, spawn_dashboard: Any, page: Any
) -> None:
    spawn_worker(APP, worker_broker_url, "-c", "2", "-E")
    assert [client.send_task(ADD, (i, i)).get(timeout=20) for i in range(12)] == [
        2 * i for i in range(12)
    ]
    for i in range(3):
        with pytest.raises(ValueError):
            client.send_task(FAIL, (f"boom {i}",)).get(timeout=20)
    board = spawn_dashboard(worker_broker_url)

    page.goto(board.url + "/")
    expect(_stat(page, "Processed")).to_have_text("12")
    expect(_stat(page, "Failed")).to_have_text("3")
    expect(_stat(page, "Workers")).to_have_text("1")
    expect(page.locator("svg.chart rect.ok").first).to_be_visible()
    # Long worker names (a queue's consumers, the workers) are cut to fit their cards.
    page.evaluate(
        "() => document.querySelectorAll('td.cut a').forEach(a => {"
        " a.textContent = 'a-rather-long-worker-hostname-' + a.textContent + '.internal' })"
    )
    assert page.locator("td.cut a").count() >= 2
    assert page.evaluate(
        "() => [...document.querySelectorAll('.card')].map(c => c.scrollWidth - c.clientWidth)"
    ) == [0] * page.locator(".card").count()

    page.goto(board.url + "/tasks?state=FAILURE")
    rows = page.locator("#task-table tbody tr[data-task]")
    expect(rows).to_have_count(3)
    rows.first.locator("a").first.click()
    expect(page.locator("#task-traceback")).to_contain_text("ValueError: boom 2")
    expect(page.locator("#timeline li")).to_have_count(3)  # received, started, failed

    page.goto(board.url + "/workers")
    worker = page.locator("#worker-table tbody tr").first
    expect(worker.locator("td").nth(4)).to_have_text("15")  # processed, from inspect stats
    page.goto(board.url + "/queues")
    expect(page.locator("table.dense tbody tr").first).to_contain_text("celery")

    flow = chain(client.signature(ADD, args=(1, 1)), client.signature(ADD, args=(10,)))
    last = flow.apply_async()
    assert last.get(timeout=20) == 12
    assert last.parent is not None
    page.goto(f"{board.url}/tasks/{last.parent.id}")
    tree = page.locator("#workflow")
    expect(tree.locator(f"a[href$='/tasks/{last.id}']")).to_be_visible()  # child, live
    expect(tree.locator("li.this")).to_contain_text("this task")

    header = [client.signature(ADD, args=(i, i)) for i in range(3)]
    body = chord(header, client.signature("tests.apps.board.tsum")).apply_async()
    assert body.get(timeout=20) == 6
    page.goto(f"{board.url}/tasks/{body.id}")
    expect(page.locator("#workflow ul.header")).to_contain_text("chord header (3)")
    expect(page.locator("#workflow ul.header a")).to_have_count(3)
    assert isinstance(body.parent, GroupResult)
    member = body.parent.results[1].id  # a header task's own page draws its chord
    page.goto(f"{board.url}/tasks/{member}")
    expect(page.locator("#workflow ul.header")).to_contain_text("chord header (3)")
    expect(page.locator(f"#workflow ul.header li:has(a[href$='/tasks/{member}'])")).to_contain_text(
        "this task"
    )
    expect(page.locator(f"#workflow a[href$='/tasks/{body.id}']")).to_be_visible()  # the body

    page.goto(board.url + "/tasks")
    expect(page.locator("#live-dot.on")).to_be_visible()
    sent = time.monotonic()
    new = client.send_task(ADD, (40, 2))
    expect(page.locator(f"tr[data-task='{new.id}']")).to_be_visible(timeout=2_000)
    assert time.monotonic() - sent < 2.0


def test_a_failed_task_retried_from_its_page_succeeds(
    redis_url: str, spawn_worker: Any, spawn_dashboard: Any, page: Any, tmp_path: Path
) -> None:
    spawn_worker(APP, redis_url, "-c", "1", "-E")
    client = Conveyor("client", broker=redis_url)
    marker = tmp_path / "marker"
    try:
        failed = client.send_task(NEEDS_FILE, (str(marker),))
        with pytest.raises(FileNotFoundError):
            failed.get(timeout=20)
        board = spawn_dashboard(redis_url)
        page.goto(f"{board.url}/tasks/{failed.id}")
        expect(page.locator("#task-traceback")).to_contain_text("FileNotFoundError")
        marker.write_text("here")
        _confirm(page, "Retry")
        expect(page.locator(".banner.note")).to_contain_text("sent again")
        expect(page.locator("#task-state")).to_have_text("SUCCESS", timeout=10_000)
        expect(page.locator("#task-result")).to_contain_text("found it")
        assert client.AsyncResult(failed.id).get(timeout=10) == "found it"
    finally:
        client.close()


def test_revoke_from_the_page_stops_a_running_task(
    tmp_path: Path, spawn_worker: Any, spawn_dashboard: Any, page: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    spawn_worker(APP, url, "-c", "1", "-E")
    client = Conveyor("client", broker=url)
    try:
        running = client.send_task(SLEEP, (60,))
        board = spawn_dashboard(url)
        page.goto(f"{board.url}/tasks/{running.id}")
        expect(page.locator("#task-state")).to_have_text("STARTED", timeout=10_000)
        started = time.monotonic()
        _confirm(page, "Terminate")
        expect(page.locator("#task-state")).to_have_text("REVOKED", timeout=10_000)
        assert client.AsyncResult(running.id).state == "REVOKED"
        assert time.monotonic() - started < 10  # not the 60 s it would have slept
        expect(page.locator("main").get_by_role("button", name="Retry")).to_be_visible()
    finally:
        client.close()


def test_auth_read_only_users_cross_site_forms_and_masked_arguments(
    redis_url: str, spawn_worker: Any, spawn_dashboard: Any, browser: Any
) -> None:
    spawn_worker(APP, redis_url, "-c", "1", "-E")
    client = Conveyor("client", broker=redis_url)
    try:
        with pytest.raises(ValueError):
            client.send_task(FAIL, ("nope",)).get(timeout=20)
        failed = client.send_task(FAIL, ("again",))
        with pytest.raises(ValueError):
            failed.get(timeout=20)
        login = client.send_task(LOGIN, ("ada",), {"password": "hunter2"})
        assert login.get(timeout=20) == "ada"
        board = spawn_dashboard(
            redis_url, "--basic-auth", "admin:s3cret,viewer:look", "--read-only-user", "viewer",
            "--url-prefix", "/q", env={"BOARD_MASK_ARGS": "1"},
        )
        task_page = f"{board.url}/q/tasks/{failed.id}"

        assert httpx.get(board.url + "/q/").status_code == 401
        assert httpx.get(board.url + "/q/", auth=("admin", "wrong")).status_code == 401
        assert httpx.get(board.url + "/q/live", auth=("nobody", "x")).status_code == 401

        viewer = browser.new_context(http_credentials={"username": "viewer", "password": "look"})
        page = viewer.new_page()
        page.goto(task_page)
        expect(page.locator("#task-traceback")).to_contain_text("ValueError: again")
        expect(page.locator("main button")).to_have_count(0)
        expect(page.locator(".who")).to_contain_text("read-only")
        page.goto(board.url + "/")  # redirected under the prefix
        page.get_by_role("link", name="Workers", exact=True).click()
        expect(page).to_have_url(board.url + "/q/workers")
        expect(page.locator("#worker-table tbody tr")).to_have_count(1)
        expect(page.locator("main button, main form[method=post]")).to_have_count(0)
        page.goto(f"{board.url}/q/tasks/{login.id}")
        expect(page.locator("#task-kwargs")).to_contain_text("'password': •••")
        expect(page.locator("#task-args")).to_contain_text("ada")
        assert "hunter2" not in page.content()
        viewer.close()

        admin = browser.new_context(http_credentials={"username": "admin", "password": "s3cret"})
        page = admin.new_page()
        page.goto(task_page)
        expect(page.locator("main").get_by_role("button", name="Retry")).to_be_visible()
        admin.close()

        # Forms: the token in a cookie and a field; another site can send neither.
        for user, password, expected in (("admin", "s3cret", 303), ("viewer", "look", 403)):
            with httpx.Client(base_url=board.url, auth=(user, password)) as http:
                http.get(f"/q/tasks/{failed.id}")
                token = http.cookies["conveyor_csrf"]
                revoke = f"/q/tasks/{failed.id}/revoke"
                assert http.post(revoke, data={"next": "/"}).status_code == 403
                forged = http.post(revoke, data={"csrf": token},
                                   headers={"Origin": "http://evil.example"})
                assert forged.status_code == 403
                assert http.post(revoke, data={"csrf": token}).status_code == expected
    finally:
        client.close()


def test_history_survives_a_dashboard_restart(
    tmp_path: Path, spawn_worker: Any, spawn_dashboard: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    worker = spawn_worker(APP, url, "-c", "1", "-E")
    client = Conveyor("client", broker=url)
    try:
        first_ids = [client.send_task(ADD, (i, 1)) for i in range(5)]
        assert [r.get(timeout=20) for r in first_ids] == [1, 2, 3, 4, 5]
        board = spawn_dashboard(url)

        def listed() -> int:
            text = httpx.get(board.url + "/tasks?state=SUCCESS").text
            return sum(r.id in text for r in first_ids)

        wait_for(lambda: listed() == 5, 10, what="the first tasks in the history")
        board.stop()
        worker.stop()
        worker = spawn_worker(APP, url, "-c", "1", "-E")
        later = client.send_task(ADD, (9, 9))
        assert later.get(timeout=20) == 18  # done while no dashboard ran
        board.start()
        wait_for(lambda: later.id in httpx.get(board.url + "/tasks").text, 10,
                 what="the task done meanwhile")
        assert listed() == 5
    finally:
        client.close()


def test_operator_actions_dead_letters_rate_limit_pool_and_shutdown(
    tmp_path: Path, spawn_worker: Any, spawn_dashboard: Any, page: Any
) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    worker = spawn_worker(APP, url, "-c", "1", "-E")
    client = Conveyor("client", broker=url)
    try:
        client.send_task("tests.apps.board.no_such_task", (1,))
        wait_for(lambda: len(client.coordinator.dead_letters()) == 1, 15, what="a dead letter")
        board = spawn_dashboard(url)

        page.goto(board.url + "/dead")
        rows = page.locator("#dead-table tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("no_such_task")
        rows.first.get_by_role("button", name="Replay").click()
        page.locator("#confirm-ok").click()
        expect(page.locator(".banner.note")).to_contain_text("Replayed 1 dead letter")
        # Still unknown to the worker: back in the dead-letter queue.
        wait_for(lambda: len(client.coordinator.dead_letters()) == 1, 15, what="dead again")
        page.reload()
        _confirm(page, "Purge all")
        expect(page.locator(".banner.note")).to_contain_text("Deleted 1 dead letter")
        expect(page.locator("#dead-table .empty")).to_be_visible()
        assert client.coordinator.dead_letters() == []

        page.goto(board.url + "/workers")
        page.locator("select[name=task]").select_option(ADD)
        page.locator("input[name=rate]").fill("5/s")
        page.get_by_role("button", name="Set rate limit").click()
        page.locator("#confirm-ok").click()
        expect(page.locator(".banner.note")).to_contain_text("rate limit 5/s")
        assert client.coordinator.rate_limits() == {ADD: "5/s"}

        row = page.locator("#worker-table tbody tr").first
        expect(row.locator("td").nth(2)).to_have_text("1")
        row.get_by_role("button", name="+1").click()
        page.locator("#confirm-ok").click()
        expect(page.locator(".banner.note")).to_contain_text("pool grown by 1")
        wait_for(lambda: len(worker.children()) == 2, 15, what="a second pool process")

        row = page.locator("#worker-table tbody tr").first
        row.get_by_role("button", name="Shut down").click()
        page.locator("#confirm-ok").click()
        expect(page.locator(".banner.note")).to_contain_text("Shutdown sent")
        assert worker.wait(20) == 0
    finally:
        client.close()
