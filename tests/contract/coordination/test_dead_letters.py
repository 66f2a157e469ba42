"""The dead-letter contract: every coordinator keeps messages that cannot run, with the
reason, and can find, replay and remove them (``conveyor dlq``).
"""

from __future__ import annotations

import time

from conveyor.stores.coordination import Coordinator, replay_dead_letters
from conveyor.stores.transport import Transport

from ..transport.helpers import bodies, consume, fetch_all


def test_dead_letters_keep_the_body_and_the_reason(coordinator: Coordinator) -> None:
    before = time.time()
    coordinator.dead_letter(b"\x00\xffraw", "q", "undecodable")
    coordinator.dead_letter(b"second", "other", "unknown task")
    letters = coordinator.dead_letters()
    assert [(d.body, d.queue, d.reason) for d in letters] == [
        (b"second", "other", "unknown task"),
        (b"\x00\xffraw", "q", "undecodable"),
    ]
    assert all(before - 1 <= d.time <= time.time() + 1 for d in letters)
    assert len({d.id for d in letters}) == 2
    assert len(coordinator.dead_letters(limit=1)) == 1


def test_dead_letters_can_be_found_replayed_and_removed(
    transport: Transport, coordinator: Coordinator
) -> None:
    coordinator.dead_letter(b"one", "q", "first reason")
    coordinator.dead_letter(b"two", "q", "second reason")
    letters = coordinator.dead_letters()
    assert [d.reason for d in letters] == ["second reason", "first reason"]
    found = coordinator.dead_letter_by_id(letters[1].id)
    assert found is not None and found.body == b"one"
    assert coordinator.dead_letter_by_id("missing") is None
    assert replay_dead_letters(coordinator, transport, [letters[1].id]) == 1
    assert bodies(fetch_all(consume(transport))) == [b"one"]
    assert [d.reason for d in coordinator.dead_letters()] == ["second reason"]
    assert coordinator.remove_dead_letters(None) == 1
    assert coordinator.dead_letters() == []
