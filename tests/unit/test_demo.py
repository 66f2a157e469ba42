"""The demo's parts that need no worker: the sentiment model, the tasks as plain
functions, the workload plan, and the runner's accounting (including a lost task)."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, states
from conveyor.backends.base import ResultMeta, encode_meta
from conveyor.demo import sentiment
from conveyor.demo.corpus import HOLDOUT, TRAIN
from conveyor.demo.runner import KindStats, Runner, plan
from conveyor.demo.tasks import Undeliverable, make_thumbnail, send_email
from conveyor.demo.workloads import WORKLOADS, Workload
from conveyor.result import AsyncResult


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


def instant(app: Conveyor, status: str = states.SUCCESS) -> Workload:
    """A workload whose results appear the moment it is sent, as from a fast worker."""

    def send(rng: random.Random, n: int) -> AsyncResult[object]:
        task_id = str(uuid.uuid4())
        meta = ResultMeta(task_id=task_id, status=status, result=n, date_done=time.time())
        app.backend.store(task_id, encode_meta(meta), True)
        return AsyncResult(task_id, app)

    return Workload(status.lower(), "instant", 1, send)


def never(app: Conveyor) -> Workload:
    def send(rng: random.Random, n: int) -> AsyncResult[object]:
        return AsyncResult(str(uuid.uuid4()), app)

    return Workload("never", "no worker", 1, send)


def test_runner_accounts_for_every_task(app: Conveyor) -> None:
    seen: list[int] = []
    runner = Runner(app, [instant(app), instant(app, states.FAILURE)], 200, in_flight=7)
    report = runner.run(on_progress=lambda r: seen.append(len(r.pending)))
    ok, failed = report.kinds
    assert (ok.sent, ok.succeeded, ok.failed) == (100, 100, 0)
    assert (failed.sent, failed.succeeded, failed.failed) == (100, 0, 100)
    assert report.lost == [] and report.total().done == 200
    assert max(seen) <= 7, "never more in flight than the window"


def test_a_task_without_a_result_is_reported_lost(app: Conveyor) -> None:
    runner = Runner(app, [instant(app), never(app)], 10, in_flight=4, stall_timeout=0.2)
    started = time.monotonic()
    report = runner.run()
    assert time.monotonic() - started < 5
    assert len(report.lost) == report.kinds[1].sent > 0
    assert report.kinds[1].done == 0
