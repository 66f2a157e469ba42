"""Celery parity with real workers (issue 10), on Redis and on SQLite: each test holds
conveyor to the result Celery documents for the same code.

The tests share one worker per broker (started once per module) and tell their
records apart by a key of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import redis

from conveyor import GroupResult, ResultSet, Signature, chain, chord, group, signature
from conveyor.exceptions import MessageError

from ..apps import parity
from ..apps.parity import read_log
from ..support import RedisServer, WorkerProcess, connected, wait_for

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.parity"
TESTS = Path(__file__).parent.parent


@dataclass
class Cluster:
    kind: str
    url: str
    records: Path

    def log(self, key: str) -> list[str]:
        return read_log(self.records, key)


def start_worker(url: str, records: Path, log: Path, *args: str) -> WorkerProcess:
    environment = dict(os.environ)
    environment.update(
        CONVEYOR_BROKER_URL=url,
        PARITY_RECORD_DIR=str(records),
        PYTHONPATH=os.pathsep.join([str(TESTS.parent), environment.get("PYTHONPATH", "")]),
    )
    command = [sys.executable, "-m", "conveyor", "-A", APP, "worker", "-l", "info", *args]
    worker = WorkerProcess(command, environment, log)
    worker.start()
    worker.wait_ready()
    return worker


@pytest.fixture(scope="module", params=["redis", "sqlite"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """A worker (prefork, 2 processes) on a broker of this module's own."""
    kind: str = request.param
    directory = tmp_path_factory.mktemp(f"parity-{kind}")
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'conveyor.db'}"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.ensure_running()
        url = f"redis://127.0.0.1:{server.port}/7"
        redis.Redis.from_url(url).flushdb()
    records = directory / "records"
    records.mkdir()
    os.environ["PARITY_RECORD_DIR"] = str(records)
    worker = start_worker(url, records, directory / "worker.log", "-c", "2")
    try:
        with connected(parity.app, url):
            yield Cluster(kind, url, records)
    finally:
        worker.stop()


def key() -> str:
    return uuid.uuid4().hex[:12]


# the two defects ---------------------------------------------------------------------------
def test_group_after_group_runs_the_last_step_once_with_the_list(cluster: Cluster) -> None:
    """Celery upgrades every group followed by a step into a chord: add -> 2; two idents
    -> [2, 2]; two tsums each get [2, 2] -> [4, 4]; the last tsum runs once -> 8."""
    k = key()
    flow = chain(
        parity.add.s(1, 1),
        group(parity.ident.s(), parity.ident.s()),
        group(parity.tsum.s(key=k), parity.tsum.s(key=k)),
        parity.tsum.s(key=k),
    )
    result = flow()
    assert result.get(timeout=30) == 8
    time.sleep(0.3)  # a second run of any step would have logged by now
    runs = sorted(line.split(" ", 2)[2] for line in cluster.log(k))
    assert runs == ["[2, 2]", "[2, 2]", "[4, 4]"]
    ids = [line.split()[1] for line in cluster.log(k)]
    assert len(set(ids)) == 3 and result.id in ids


def test_bytes_arguments_and_results_keep_their_type(cluster: Cluster) -> None:
    blob = bytes(range(256))
    sent = parity.describe.delay(blob, [b"x", bytearray(b"y")], meta={"raw": b"\x00"}, text="t")
    assert sent.get(timeout=20) == [["bytes", "list"], {"meta": "dict", "text": "str"}]
    assert parity.give.delay(blob).get(timeout=20) == blob
    assert parity.give.delay({"nested": [b"\xff"]}).get(timeout=20) == {"nested": [b"\xff"]}
    # A dict that only looks like a marker stays a dict.
    lookalike = {"__type__": "decimal", "__value__": "1.5"}
    assert parity.give.delay(lookalike).get(timeout=20) == lookalike
    # Through a chain's partial arguments and the previous step's result.
    flow = chain(parity.give.s(b"abc"), parity.describe.s(b"def"))
    assert flow().get(timeout=20) == [["bytes", "bytes"], {}]


# the task API ------------------------------------------------------------------------------
def test_arguments_are_checked_at_delay(cluster: Cluster) -> None:
    """Celery's typing=True: a call that does not bind raises TypeError in the caller."""
    with pytest.raises(TypeError, match=r"tests\.apps\.parity\.add\(\) missing 1 required"):
        parity.add.delay(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        parity.add.apply_async((1, 2), {"z": 3})
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        parity.add.s(1, 2, 3).delay()
    with pytest.raises(TypeError):
        group(parity.add.s(1, 2), parity.add.s(1))()  # a group member, too
    assert parity.add.delay(1, y=2).get(timeout=20) == 3  # what binds is sent
    # send_task goes by name, unchecked (as Celery's); the worker refuses the call.
    by_name = parity.app.send_task("tests.apps.parity.add", (1,))
    with pytest.raises(MessageError, match="arguments do not fit"):
        by_name.get(timeout=20)
    # A bound task's self is not an argument; class-based tasks are checked too.
    with pytest.raises(TypeError):
        parity.failing.delay()
    with pytest.raises(TypeError):
        parity.flaky.delay()


def test_soft_time_limit_above_time_limit_is_refused(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match=r"soft_time_limit .* must be less than or equal"):
        parity.limits_upside_down.delay()
    with pytest.raises(ValueError, match="soft_time_limit"):
        parity.add.apply_async((1, 2), soft_time_limit=10, time_limit=5)


def test_ignore_result_per_call_returns_none_at_once(cluster: Cluster) -> None:
    k = key()
    result = parity.add.apply_async((1, 2), ignore_result=True)
    assert result.get(timeout=0.001) is None  # no wait: nothing will be stored
    # A task declared ignore_result: the same.
    assert parity.quiet.delay(k).get(timeout=0.001) is None
    wait_for(lambda: cluster.log(k) == ["quiet ran"], 10, what="the quiet task")
    assert parity.add.apply_async((2, 2)).get(timeout=20) == 4  # others still wait


def test_class_based_task_with_autoretry_and_backoff(cluster: Cluster) -> None:
    k = key()
    assert parity.app.tasks["tests.apps.parity.Flaky"] is parity.flaky
    assert parity.flaky.delay(k).get(timeout=20) == "ok after 2"
    assert cluster.log(k) == ["attempt 0", "attempt 1", "attempt 2"]
    # Registered by class, named module.ClassName as Celery names it.
    assert parity.unnamed.name == "tests.apps.parity.Unnamed"
    assert parity.app.send_task("tests.apps.parity.Unnamed", (5,)).get(timeout=20) == 15


def test_custom_base_handlers_get_celerys_arguments(cluster: Cluster) -> None:
    k = key()
    ok = parity.audited.delay(k, "ok")
    assert ok.get(timeout=20) == "ok"
    wait_for(lambda: len(cluster.log(k)) >= 3, 10, what="the handlers")
    assert cluster.log(k) == [
        f"before_start {ok.id} {ok.id}", f"on_success 'ok' {ok.id}",
        f"after_return SUCCESS {ok.id}",
    ]  # fmt: skip
    k = key()
    bad = parity.audited.delay(k, "fail")
    with pytest.raises(ValueError, match="audited failure"):
        bad.get(timeout=20)
    wait_for(lambda: len(cluster.log(k)) >= 3, 10, what="the handlers")
    assert cluster.log(k)[1:] == [
        f"on_failure ValueError {bad.id} True", f"after_return FAILURE {bad.id}"
    ]  # fmt: skip
    k = key()
    again = parity.audited.delay(k, "retry")
    assert again.get(timeout=20) == "retry"
    wait_for(lambda: len(cluster.log(k)) >= 5, 10, what="the handlers")
    assert f"on_retry TimeoutError {again.id}" in cluster.log(k)
    assert cluster.log(k)[-1] == f"after_return SUCCESS {again.id}"


def test_app_signature_and_signatures_as_data(cluster: Cluster) -> None:
    sig = parity.app.signature("tests.apps.parity.add", args=(2, 3), countdown=0)
    assert sig.delay().get(timeout=20) == 5
    flow = chain(parity.add.s(1, 1), parity.add.s(10))
    rebuilt = signature(flow.to_dict(), app=parity.app)
    assert isinstance(rebuilt, chain) and rebuilt().get(timeout=20) == 12
    # A workflow passed to a task and returned by it, as a dict, is rebuilt by from_dict.
    echoed = parity.give.delay(chord([parity.add.s(1, 1)], parity.tsum.s()).to_dict())
    back = Signature.from_dict(echoed.get(timeout=20), parity.app)
    assert isinstance(back, chord) and back().get(timeout=20) == 2


# results -----------------------------------------------------------------------------------
def test_group_result_save_and_restore(cluster: Cluster) -> None:
    result = group(parity.add.s(i, i) for i in range(3))()
    result.save()
    restored = GroupResult.restore(result.id, app=parity.app)
    assert restored is not None and restored.id == result.id
    assert [r.id for r in restored.results] == [r.id for r in result.results]
    assert restored.get(timeout=20) == [0, 2, 4]
    restored.delete()
    assert GroupResult.restore(result.id, app=parity.app) is None


def test_result_set_then_and_date_done(cluster: Cluster) -> None:
    results = ResultSet([parity.add.delay(1, 1), parity.add.delay(2, 2)])
    results.add(parity.add.delay(3, 3))
    assert results.get(timeout=20) == [2, 4, 6] and results.completed_count() == 3
    seen: Future[int] = parity.add.delay(4, 4).then(lambda r: r.get() * 10)
    assert seen.result(timeout=20) == 80
    done = parity.add.delay(5, 5)
    done.get(timeout=20)
    assert isinstance(done.date_done, datetime) and done.date_done.tzinfo is not None


def test_children_parent_and_root_ids(cluster: Cluster) -> None:
    """A link= callback is a child of its task (Celery's result.children); a chain's id
    is its last task's, and each step's parent is the step before, root the first."""
    first = parity.add.apply_async((1, 2), link=parity.ident.s())
    assert first.get(timeout=20) == 3
    wait_for(lambda: len(first.children) == 1, 10, what="the callback as a child")
    assert first.children[0].get(timeout=20) == 3
    flow = chain(parity.add.s(1, 1), parity.add.s(1), parity.add.s(1))
    frozen = flow.freeze()
    assert frozen.id == flow.tasks[-1].id == flow.id
    assert flow.apply_async().get(timeout=20) == 4
    middle = frozen.parent
    assert middle is not None and middle.parent is not None
    assert parity.app.AsyncResult(frozen.id).parent == middle


# the worker's --rate-limit -----------------------------------------------------------------
def test_worker_rate_limit_is_a_default_for_tasks_without_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    """``worker --rate-limit 1/m``: tasks without a rate of their own start once a
    minute, counted across all workers; tasks with one keep theirs."""
    queue = f"paced-{key()}"
    worker = start_worker(
        cluster.url, cluster.records, tmp_path / "paced.log", "-Q", queue, "-c", "1",
        "-P", "threads", "--rate-limit", "1/m",
    )  # fmt: skip
    try:
        own = [parity.own_pace.apply_async((i,), queue=queue) for i in range(3)]
        assert [r.get(timeout=20) for r in own] == [0, 1, 2]
        paced = [parity.paced.apply_async((i,), queue=queue) for i in range(3)]
        wait_for(lambda: sum(r.ready() for r in paced) >= 1, 20, what="the first paced task")
        time.sleep(2)  # at 1/m the others wait a minute: none may start meanwhile
        assert sum(r.ready() for r in paced) == 1
    finally:
        worker.stop()


def test_worker_refuses_a_bad_rate_limit(cluster: Cluster) -> None:
    environment = dict(os.environ, CONVEYOR_BROKER_URL=cluster.url)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS.parent), environment.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "-A", APP, "worker", "--rate-limit", "often"],
        env=environment, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "bad rate limit 'often'" in done.stderr


# canvas: Celery's own integration expectations (t/integration/test_canvas.py) -------------
def test_nested_groups_unroll_as_celerys(cluster: Cluster) -> None:
    add, ident = parity.add, parity.ident
    nested = group(add.si(1, 10), group(add.si(1, 100), group(add.si(1, 1000), add.si(1, 2000))))
    assert nested().get(timeout=20) == [11, 101, 1001, 2001]
    assert group(group(ident.s(42), ident.s(42))).delay().get(timeout=20) == [42, 42]
    # A chain stops the unrolling: its group's list is one result.
    tail = group(chain(ident.s(42), group(ident.s(), ident.s())), ident.s(1))
    assert tail().get(timeout=20) == [[42, 42], 1]


def test_chords_with_any_canvas_in_the_header(cluster: Cluster) -> None:
    ident = parity.ident
    assert group((chord((ident.si(42),), ident.s()),)).delay().get(timeout=20) == [[42]]
    mixed = chord(
        (
            ident.si(42),
            chain((ident.si(42),) * 5),
            group((ident.si(42),) * 5),
            chord((ident.si(42),) * 5, ident.si(1337)),
        ),
        ident.s(),
    )
    assert group((mixed,)).delay().get(timeout=30) == [[42, 42, *((42,) * 5), 1337]]
    unrolled = chord((group(ident.s(42), ident.s(42)),), ident.s())
    assert unrolled.delay().get(timeout=20) == [42, 42]
    tail = chord(group(chain(ident.s(42), group(ident.s(), ident.s()))), ident.s())
    assert tail.delay().get(timeout=20) == [[42, 42]]


def test_nested_chords_and_chains_of_chords(cluster: Cluster) -> None:
    add, add_to_all = parity.add, parity.add_to_all
    nested = chord(
        [chord([add.s(1, 2), add.s(3, 4)], add.s([5])), chord([add.s(6, 7)], add.s([10]))],
        add_to_all.s(["A"]),
    )
    assert nested().get(timeout=30) == [[3, 7, 5, "A"], [13, 10, "A"]]
    upgraded = group(
        [group([add.s(1, 2), add.s(3, 4)]) | add.s([5]), group([add.s(6, 7)]) | add.s([10])]
    ) | add_to_all.s(["A"])
    assert upgraded().get(timeout=30) == [[3, 7, 5, "A"], [13, 10, "A"]]
    chords = chain(
        chord([add.s(1, 1), add.s(2, 2)], parity.tsum.s()),
        chord([add.s(1), add.s(2)], parity.tsum.s()),
    )
    assert chords().get(timeout=30) == 15  # 6 -> [7, 8] -> 15


def test_empty_chord_headers(cluster: Cluster) -> None:
    assert chord([], body=parity.add_to_all.s(9))().get(timeout=20) == []
    assert (group([]) | parity.add_to_all.s(9))().get(timeout=20) == []


def test_errors_reach_get_as_the_failed_tasks_own(cluster: Cluster) -> None:
    ident, fail = parity.ident, parity.fail
    header_fails = chord((group(ident.si(42), fail.s()),), ident.s())
    with pytest.raises(parity.ExpectedException):
        header_fails.delay().get(timeout=20)
    body_fails = chord((ident.si(42),), group(ident.si(42), fail.s()))
    with pytest.raises(parity.ExpectedException):
        body_fails.delay().get(timeout=20)
    in_chain = chain(parity.add.s(1, 1), fail.s(), ident.s())
    with pytest.raises(parity.ExpectedException):
        in_chain().get(timeout=20)


@pytest.mark.parametrize("style", ["old", "new", "immutable"])
def test_chord_errbacks_run_once_with_celerys_arguments(cluster: Cluster, style: str) -> None:
    k = key()
    errback = {
        "old": parity.errback_old_style.s(key=k),
        "new": parity.errback_new_style.s(key=k),
        "immutable": parity.record.si(k, "immutable"),
    }[style]
    sig = chord((group(parity.ident.si(42), parity.fail.s()),), parity.ident.s())
    sig.link_error(errback)
    result = sig.delay()
    with pytest.raises(parity.ExpectedException):
        result.get(timeout=20)
    wait_for(lambda: cluster.log(k), 10, what="the errback")
    time.sleep(0.3)  # a second call would have logged by now
    expected = {
        "old": f"old {result.id}",  # the body's id, as Celery's chord_error_from_stack
        "new": f"new {result.id} ChordError",
        "immutable": "immutable",
    }[style]
    assert cluster.log(k) == [expected]


def test_group_link_calls_the_callback_once(cluster: Cluster) -> None:
    k = key()
    flow = group(parity.add.s(1, 1), parity.add.s(2, 2), parity.add.s(3, 3))
    flow.link(parity.record.s(k))  # made immutable: it gets no result
    assert flow().get(timeout=20) == [2, 4, 6]
    wait_for(lambda: cluster.log(k), 10, what="the callback")
    time.sleep(0.3)
    assert cluster.log(k) == ["ran"]
    with pytest.raises(TypeError, match="use a chord"):
        flow.apply_async(link=parity.record.s(k))


# self.replace: Celery's t/integration expectations ----------------------------------------
def test_replace_with_a_task_keeps_the_place_in_a_chain(cluster: Cluster) -> None:
    assert parity.add_replaced.delay(2, 3).get(timeout=20) == 5
    assert chain(parity.add_replaced.s(1, 1), parity.add.s(10))().get(timeout=20) == 12
    k = key()
    linked = parity.add_replaced.apply_async((1, 2), link=parity.record.si(k, "linked"))
    assert linked.get(timeout=20) == 3
    wait_for(lambda: cluster.log(k), 10, what="the link")
    time.sleep(0.3)
    assert cluster.log(k) == ["linked"]


def test_replace_in_a_chord_header(cluster: Cluster) -> None:
    ident, replaced = parity.ident, parity.replace_with_chain
    assert chord(replaced.si(42), ident.s()).delay().get(timeout=20) == [42]
    middle = chord((ident.s(42), replaced.s(1337), ident.s(31337)), ident.s())
    assert middle.delay().get(timeout=20) == [42, 1337, 31337]


def test_replace_with_a_group_or_a_chord(cluster: Cluster) -> None:
    assert parity.replace_with_group.delay([1, 2, 3], 10).get(timeout=20) == [11, 12, 13]
    flow = chain(parity.replace_with_group.s([1, 2], 1), parity.tsum.s())
    assert flow().get(timeout=20) == 5
    mixed = group(parity.replace_with_chord.s([1, 2, 3]), parity.add.s(1, 1))
    assert mixed().get(timeout=20) == [6, 2]


def test_replace_keeps_the_errbacks(cluster: Cluster) -> None:
    k = key()
    result = parity.replace_with_failure.apply_async(link_error=parity.errback_old_style.s(key=k))
    with pytest.raises(parity.ExpectedException):
        result.get(timeout=20)
    wait_for(lambda: cluster.log(k), 10, what="the errback")
    time.sleep(0.3)
    assert cluster.log(k) == [f"old {result.id}"]


# ResultSet: Celery's GroupResult derives from it -------------------------------------------
def test_group_result_is_a_result_set(cluster: Cluster) -> None:
    result = group(parity.add.s(1, 1), parity.add.s(2, 2))()
    assert isinstance(result, ResultSet) and isinstance(result, GroupResult)
    assert result.get(timeout=20) == [2, 4]
    made = ResultSet([parity.add.delay(1, 1)])
    assert not isinstance(made, GroupResult)
    assert not hasattr(made, "save") and not hasattr(made, "restore")


def test_result_set_methods_as_celerys(cluster: Cluster) -> None:
    first, second = parity.add.delay(1, 1), parity.add.delay(2, 2)
    results = ResultSet([first])
    results.add(second)
    results.add(second)  # Celery's add ignores a result already in the set
    assert [r.id for r in results] == [first.id, second.id] and len(results) == 2
    assert results.join(timeout=20) == [2, 4]
    assert results.ready() and results.successful() and not results.failed()
    assert results.completed_count() == 2
    failed = parity.fail.delay()
    results.add(failed)
    with pytest.raises(parity.ExpectedException):
        results.get(timeout=20)
    assert results.ready() and results.failed() and not results.successful()
    assert results.completed_count() == 2
    values = results.get(timeout=20, propagate=False)
    assert values[:2] == [2, 4] and isinstance(values[2], parity.ExpectedException)
    results.remove(failed.id)  # by id or by result, as Celery's
    assert [r.id for r in results] == [first.id, second.id] and results.successful()
    with pytest.raises(ValueError):
        results.remove(failed)
    results.discard(failed)  # discard ignores one that is not there
    waiting = ResultSet([parity.add.delay(5, 5), parity.ident.s(1).set(countdown=2).delay()])
    assert not waiting.ready() and waiting.completed_count() <= 1
    assert waiting.get(timeout=20) == [10, 1]


# a Task subclass's own __call__ runs in the worker -------------------------------------------
def test_the_worker_calls_an_overridden_dunder_call(cluster: Cluster) -> None:
    k = key()
    result = parity.in_transaction.delay(k, 21)
    assert result.get(timeout=20) == 42
    assert cluster.log(k) == [f"begin {result.id}", f"body {result.id}", f"commit {result.id}"]
    assert parity.in_transaction.body == parity.in_transaction.__call__
    assert parity.add.body == parity.add.run  # no override: the body, nothing around it


# self.replace inside a link= callback -------------------------------------------------------
def test_replace_inside_a_link_callback(cluster: Cluster) -> None:
    k = key()
    result = parity.add.apply_async((1, 2), link=parity.replacing_callback.s(k))
    assert result.get(timeout=20) == 3
    wait_for(lambda: cluster.log(k), 10, what="the replacement of the callback")
    time.sleep(0.3)  # a second run would have logged by now
    assert cluster.log(k) == ["replaced 3"]
    wait_for(lambda: len(result.children) == 1, 10, what="the callback as a child")
    assert result.children[0].get(timeout=20) is None  # the replacement's result


# parent_id / root_id as Celery stamps them ---------------------------------------------------
def lineages(cluster: Cluster, k: str) -> dict[str, tuple[str, str]]:
    return {line.split()[0]: (line.split()[1], line.split()[2]) for line in cluster.log(k)}


def test_chain_steps_parent_is_the_step_before_root_the_first(cluster: Cluster) -> None:
    k = key()
    flow = chain(parity.lineage.si(k), parity.lineage.si(k), parity.lineage.si(k))
    last = flow.apply_async()
    last.get(timeout=20)
    middle = last.parent
    assert middle is not None and middle.parent is not None
    first = middle.parent
    seen = lineages(cluster, k)
    assert seen[first.id] == ("None", first.id)
    assert seen[middle.id] == (first.id, first.id)
    assert seen[last.id] == (middle.id, first.id)


def test_group_members_sent_by_a_task_have_it_as_parent(cluster: Cluster) -> None:
    k = key()
    flow = chain(parity.lineage.si(k), parity.send_group.si(k))
    sender = flow.apply_async()
    members = sender.get(timeout=20)
    for member in members:
        parity.app.AsyncResult(member).get(timeout=20)
    root = sender.parent
    assert root is not None
    seen = lineages(cluster, k)
    assert seen[sender.id] == (root.id, root.id)
    assert [seen[m] for m in members] == [(sender.id, root.id)] * 2


def test_chord_in_a_chain_keeps_the_root_and_the_header_parent(cluster: Cluster) -> None:
    """Celery: a chord's header tasks are children of the step before, every task of the
    chain has the first as root. (The body's parent: README, "Differences from Celery".)"""
    k = key()
    header = [parity.lineage.si(k), parity.lineage.si(k)]
    flow = chain(parity.lineage.si(k), chord(header, parity.lineage.si(k)))
    body = flow.apply_async()
    body.get(timeout=20)
    seen = lineages(cluster, k)
    assert len(seen) == 4
    first = next(task for task, (parent, _) in seen.items() if parent == "None")
    assert all(root == first for _, root in seen.values())
    members = [t for t in seen if t not in (first, body.id)]
    assert [seen[m][0] for m in members] == [first, first]
    assert seen[body.id][0] not in ("None", first)
