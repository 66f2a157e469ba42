"""Signed messages against a real worker, on Redis and SQLite: the worker runs what a
certificate in its store signed, and dead-letters (REJECTED) everything else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from conveyor import Conveyor, signing, states
from conveyor.exceptions import MessageError
from conveyor.message import Envelope, encode_envelope
from conveyor.serializers import unframe

from ..certs import issue

TOUCH = "tests.apps.signed.touch"


@pytest.fixture(autouse=True)
def _signing_off() -> Iterator[None]:
    yield
    signing.reset()


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """worker, current and previous sender keys; the store trusts the previous and the
    current sender certificates (a rotation in progress) and the worker's own."""
    directory = tmp_path / "security"
    store = directory / "store"
    store.mkdir(parents=True)
    trust = {"worker": True, "current": True, "previous": True, "stranger": False}
    for name, trusted in trust.items():
        issued = issue(name, kind="ec" if name == "previous" else "rsa")
        issued.write(directory, name)
        if trusted:
            (store / f"{name}.pem").write_bytes(issued.cert_pem())
    return directory


def sender(keys: Path, name: str, url: str) -> Conveyor:
    """An app in this process that signs with ``name``'s key."""
    signing.reset()
    app = Conveyor(
        f"sender-{name}",
        broker=url,
        set_as_current=False,
        security_key=str(keys / f"{name}.key"),
        security_certificate=str(keys / f"{name}.pem"),
        security_cert_store=str(keys / "store" / "*.pem"),
        task_serializer="auth",
        accept_content=["auth"],
    )
    app.setup_security()
    return app


def test_only_messages_signed_by_the_store_run(
    keys: Path, tmp_path: Path, worker_broker_url: str, spawn_worker: Any
) -> None:
    spawn_worker(
        "tests.apps.signed", worker_broker_url, "-c", "1",
        env={"CONVEYOR_TEST_SECURITY": str(keys)},
    )
    traces = tmp_path / "traces"
    traces.mkdir()

    # Signed by either of two trusted certificates (key rotation): runs.
    for name in ("current", "previous"):
        app = sender(keys, name, worker_broker_url)
        result = app.send_task(TOUCH, args=[str(traces / name)])
        assert result.get(timeout=10) == str(traces / name)
        app.close()

    # Signed by a key whose certificate the store lacks: refused.
    stranger = sender(keys, "stranger", worker_broker_url)
    forged = stranger.send_task(TOUCH, args=[str(traces / "forged")])
    # Signed by a trusted key, then altered on the way: refused.
    current = sender(keys, "current", worker_broker_url)
    original = current.send_task(TOUCH, args=[str(traces / "original")])
    original.get(timeout=10)
    tampered_id = "altered-1"
    body = _signed_body(tampered_id, str(traces / "tampered"))
    current.broker.publish("celery", (_tamper(body, b'/tampered"', b'/tamperex"'),))
    # Not signed at all: refused.
    signing.reset()
    plain = Conveyor("plain", broker=worker_broker_url, set_as_current=False)
    unsigned = plain.send_task(TOUCH, args=[str(traces / "unsigned")])

    reasons = {
        forged.id: "not in the certificate store",
        tampered_id: "bad signature",
        unsigned.id: "content type 'json' is not in accept_content (auth)",
    }
    for task_id, reason in reasons.items():
        result = plain.AsyncResult(task_id)
        with pytest.raises(MessageError, match=re.escape(reason)):
            result.get(timeout=10)
        assert result.state == states.REJECTED
    letters = plain.coordinator.dead_letters()
    assert len(letters) == 3
    for reason in reasons.values():
        assert len([letter for letter in letters if reason in letter.reason]) == 1, reason
    assert sorted(p.name for p in traces.iterdir()) == ["current", "original", "previous"]
    plain.close()
    current.close()
    stranger.close()


def _signed_body(task_id: str, path: str) -> bytes:
    return encode_envelope(Envelope(id=task_id, task=TOUCH, args=[path]), "auth")


def _tamper(body: bytes, old: bytes, new: bytes) -> bytes:
    _, payload = unframe(body)
    signed = msgspec.msgpack.decode(payload, type=signing.SignedMessage)
    assert old in signed.body
    altered = signing.SignedMessage(signed.signer, signed.signature, signed.body.replace(old, new))
    return b"\x00auth\x00" + msgspec.msgpack.encode(altered)
