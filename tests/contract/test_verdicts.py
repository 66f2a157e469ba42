"""The broker contract for failures: discard, revocations and the dead-letter queue.

Every broker keeps them, so time limits, revoke and ``conveyor dlq`` work on each.
"""

from __future__ import annotations

import time

from conveyor.stores.transport import Broker

from .conftest import MakeBroker
from .test_broker import bodies, consume, fetch_all


def test_discard_ends_a_lease_without_requeueing(broker: Broker) -> None:
    broker.publish("q", [b"killed", b"unstarted"])
    consumer = consume(broker, "c-dead")
    killed, _unstarted = consumer.fetch(10, 1.0)
    broker.discard("c-dead", [killed.tag])
    assert broker.reclaim("c-dead") == 1  # only the unstarted one goes back
    assert bodies(fetch_all(consume(broker, "c2"))) == [b"unstarted"]


def test_revocations_are_shared_versioned_and_expire(make_broker: MakeBroker) -> None:
    writer, reader = make_broker(), make_broker()
    assert reader.revocations(0) is None  # nothing revoked yet: nothing to read
    writer.revoke(["a", "b"], ttl=60)
    first = reader.revocations(0)
    assert first is not None and first.revoked == {"a", "b"} and first.terminate == {}
    assert reader.revocations(first.version) is None  # unchanged: no re-read
    writer.revoke(["c"], ttl=60, terminate="SIGKILL")
    second = reader.revocations(first.version)
    assert second is not None and second.version > first.version
    assert second.revoked == {"a", "b", "c"} and second.terminate == {"c": "SIGKILL"}
    writer.revoke(["short"], ttl=0.001)

    time.sleep(0.05)
    writer.revoke(["later"], ttl=60)
    third = reader.revocations(second.version)
    assert third is not None and "short" not in third.revoked and "later" in third.revoked


def test_dead_letters_can_be_found_replayed_and_removed(broker: Broker) -> None:
    broker.dead_letter(b"one", "q", "first reason")
    broker.dead_letter(b"two", "q", "second reason")
    letters = broker.dead_letters()
    assert [d.reason for d in letters] == ["second reason", "first reason"]
    found = broker.dead_letter_by_id(letters[1].id)
    assert found is not None and found.body == b"one"
    assert broker.dead_letter_by_id("missing") is None
    assert broker.replay_dead_letters([letters[1].id]) == 1
    assert bodies(fetch_all(consume(broker))) == [b"one"]
    assert [d.reason for d in broker.dead_letters()] == ["second reason"]
    assert broker.remove_dead_letters(None) == 1
    assert broker.dead_letters() == []
