"""The demo's parts that need no worker: the sentiment model, the tasks as plain
functions (the webhook's retries run eagerly), the workload plan, and the runner's
accounting (including retries and a lost task)."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, states
from conveyor.demo import sentiment
from conveyor.demo.app import HEARTBEAT_EVERY
from conveyor.demo.app import app as demo_app
from conveyor.demo.corpus import HOLDOUT, TRAIN
from conveyor.demo.runner import KindStats, PeriodicStats, Runner, plan
from conveyor.demo.tasks import (
    FLAKY_RATE,
    Undeliverable,
    _connection_drops,
    call_webhook,
    make_thumbnail,
    read_heartbeats,
    send_email,
    summarize,
)
from conveyor.demo.workloads import WORKLOADS, Workload
from conveyor.result import AsyncResult
from conveyor.stores.results import ResultMeta, encode_meta


# the model ---------------------------------------------------------------------------------
def test_negation_colours_the_next_words_until_punctuation() -> None:
    assert sentiment.tokenize("Not good, great!") == ["not", "not_good", "great"]
    negated = ["it", "isn't", "not_bad", "not_at", "not_all"]
    assert sentiment.tokenize("It isn't bad at all") == negated


def test_the_model_is_right_on_sentences_it_never_saw() -> None:
    assert sentiment.current().accuracy(HOLDOUT) >= 0.9
    assert {text for text, _ in HOLDOUT}.isdisjoint(text for text, _ in TRAIN)


def test_score_and_retrain() -> None:
    scored = sentiment.score(["I love it, works perfectly.", "Broken and useless."])
    assert [s["label"] for s in scored] == ["positive", "negative"]
    assert scored[0]["score"] > 0.5 > scored[1]["score"]
    report = sentiment.retrain()
    assert report["examples"] == len(TRAIN) and report["holdout_accuracy"] >= 0.9


def test_training_needs_both_labels() -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        sentiment.train([("good", True)])


# the tasks, called as functions -----------------------------------------------------------
def test_thumbnail_fits_the_box_and_is_deterministic() -> None:
    first = make_thumbnail(7, 256, 256)
    assert first == make_thumbnail(7, 256, 256)
    assert first["width"] <= 48 and first["height"] <= 48
    assert first["bytes"] == first["width"] * first["height"]


def test_an_email_to_an_invalid_domain_bounces() -> None:
    sent = send_email("a@example.com", "welcome", {"name": "A", "account": "1"})
    assert sent["to"] == "a@example.com" and sent["bytes"] > 0
    with pytest.raises(Undeliverable, match="550"):
        send_email("b@bounce.invalid", "welcome", {"name": "B", "account": "2"})


def test_summarize_turns_scores_into_a_report() -> None:
    scores = sentiment.score(["I love it, works perfectly.", "Broken and useless.", "Great!"])
    report = summarize(scores)
    assert (report["reviews"], report["positive"], report["negative"]) == (3, 2, 1)
    assert report["lowest_score"] == min(s["score"] for s in scores) < 0.5
    assert 0 < report["mean_score"] < 1
    assert summarize([])["reviews"] == 0


def test_webhook_attempts_fail_about_30_percent_and_always_get_through() -> None:
    urls = [f"https://hooks.example.com/customer/{i}" for i in range(1, 501)]
    drops = [_connection_drops(url, attempt) for url in urls for attempt in range(6)]
    assert abs(sum(drops) / len(drops) - FLAKY_RATE) < 0.05
    assert _connection_drops(urls[0], 0) == _connection_drops(urls[0], 0), "deterministic"
    flaky = next(url for url in urls if _connection_drops(url, 0))
    result = call_webhook.apply((flaky, {"id": 1}))  # eager: autoretry_for retries in place
    assert result.status == states.SUCCESS and result.result["attempts"] >= 2
    assert call_webhook.max_retries == 5 and call_webhook.autoretry_for == (ConnectionError,)


def test_beat_schedule_sends_the_heartbeat_every_half_second() -> None:
    entry = demo_app.conf.beat_schedule["heartbeat"]
    assert entry == {"task": "conveyor.demo.tasks.heartbeat_report", "schedule": HEARTBEAT_EVERY}


def test_read_heartbeats(tmp_path: Path) -> None:
    log = tmp_path / "heartbeats.jsonl"
    assert read_heartbeats(log) == []
    log.write_text("".join(json.dumps({"at": t}) + "\n" for t in (1.0, 1.5)))
    assert [r["at"] for r in read_heartbeats(log)] == [1.0, 1.5]
    periodic = PeriodicStats("heartbeat_report", 0.5, fired=2, window=1.2)
    assert periodic.most == 3


# the plan and the statistics --------------------------------------------------------------
def test_plan_follows_the_weights_exactly_and_is_repeatable() -> None:
    order = plan(WORKLOADS, 1001, random.Random(5))
    assert len(order) == 1001
    weights = [w.weight for w in WORKLOADS]
    for index, weight in enumerate(weights):
        assert abs(order.count(index) - 1001 * weight / sum(weights)) < 1
    assert order == plan(WORKLOADS, 1001, random.Random(5))


def test_percentiles_by_nearest_rank() -> None:
    stats = KindStats("k", 100)
    stats.latencies = [float(i) for i in range(1, 101)]
    assert stats.percentile(0.5) == 50.0 and stats.percentile(0.99) == 99.0
    assert KindStats("empty", 0).percentile(0.5) is None


# the runner, against the memory backend with an instant "worker" --------------------------
@pytest.fixture
def app() -> Iterator[Conveyor]:
    url = f"memory://{uuid.uuid4().hex}"
    app = Conveyor("demo-test", broker=url, backend=url, set_as_current=False)
    yield app
    app.close()


def instant(app: Conveyor, status: str = states.SUCCESS, retries: int = 0) -> Workload:
    """A workload whose results appear the moment it is sent, as from a fast worker
    (after ``retries`` retries)."""

    def send(rng: random.Random, n: int) -> AsyncResult[object]:
        task_id = str(uuid.uuid4())
        meta = ResultMeta(
            task_id=task_id, status=status, result=n, date_done=time.time(), retries=retries
        )
        app.backend.store(task_id, encode_meta(meta), True)
        return AsyncResult(task_id, app)

    return Workload(status.lower(), "instant", 1, send)


def never(app: Conveyor) -> Workload:
    def send(rng: random.Random, n: int) -> AsyncResult[object]:
        return AsyncResult(str(uuid.uuid4()), app)

    return Workload("never", "no worker", 1, send)


def test_runner_accounts_for_every_task(app: Conveyor) -> None:
    seen: list[int] = []
    workloads = [instant(app, retries=2), instant(app, states.FAILURE)]
    runner = Runner(app, workloads, 200, in_flight=7)
    report = runner.run(on_progress=lambda r: seen.append(len(r.pending)))
    ok, failed = report.kinds
    assert (ok.sent, ok.succeeded, ok.failed, ok.retries) == (100, 100, 0, 200)
    assert (failed.sent, failed.succeeded, failed.failed, failed.retries) == (100, 0, 100, 0)
    assert report.lost == [] and report.total().done == 200
    assert report.total().retries == 200
    assert max(seen) <= 7, "never more in flight than the window"


def test_a_task_without_a_result_is_reported_lost(app: Conveyor) -> None:
    runner = Runner(app, [instant(app), never(app)], 10, in_flight=4, stall_timeout=0.2)
    started = time.monotonic()
    report = runner.run()
    assert time.monotonic() - started < 5
    assert len(report.lost) == report.kinds[1].sent > 0
    assert report.kinds[1].done == 0
