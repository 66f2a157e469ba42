"""Signed messages (signing.py) and how the envelope codec frames them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conveyor import Conveyor, signing
from conveyor.exceptions import ConfigurationError, ContentDisallowed, SecurityError
from conveyor.message import Envelope, decode_envelope, encode_envelope, message_head
from conveyor.serializers import unframe

from ..certs import issue

AUTH = frozenset({"auth"})


@pytest.fixture(autouse=True)
def _signing_off() -> Iterator[None]:
    yield
    signing.reset()


def secure_app(tmp_path: Path, *, kind: str = "rsa", **settings: object) -> Conveyor:
    """An app signing with a fresh key whose certificate is alone in the store."""
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    me = issue("sender", kind=kind)
    key, cert = me.write(tmp_path, "sender")
    (store / "sender.pem").write_bytes(me.cert_pem())
    app = Conveyor(
        "secure",
        broker="memory://",
        security_key=str(key),
        security_certificate=str(cert),
        security_cert_store=str(store / "*.pem"),
        security_digest="sha256",
        task_serializer="auth",
        accept_content=["auth"],
    )
    app.conf.update(settings)
    app.setup_security()
    return app


def test_a_signed_message_round_trips(tmp_path: Path) -> None:
    secure_app(tmp_path)
    envelope = Envelope(id="t-1", task="proj.add", args=[2, 3])
    body = encode_envelope(envelope, "auth")
    assert unframe(body)[0] == "auth"
    assert decode_envelope(body, AUTH) == envelope


def test_elliptic_curve_keys_sign_too(tmp_path: Path) -> None:
    secure_app(tmp_path, kind="ec", security_digest="sha384")
    envelope = Envelope(id="t-1", task="proj.add")
    assert decode_envelope(encode_envelope(envelope, "auth"), AUTH) == envelope


def test_an_unsigned_message_is_refused_by_a_signing_worker(tmp_path: Path) -> None:
    secure_app(tmp_path)
    body = encode_envelope(Envelope(id="t-1", task="proj.add"))
    with pytest.raises(ContentDisallowed, match="'json' is not in accept_content"):
        decode_envelope(body, AUTH)


def test_a_tampered_message_fails_its_signature(tmp_path: Path) -> None:
    secure_app(tmp_path)
    body = encode_envelope(Envelope(id="t-1", task="proj.add", args=[2, 3]), "auth")
    _, payload = unframe(body)
    signed = msgspec.msgpack.decode(payload, type=signing.SignedMessage)
    forged_body = signed.body.replace(b"[2,3]", b"[2,4]")
    assert forged_body != signed.body
    tampered = b"\x00auth\x00" + msgspec.msgpack.encode(
        signing.SignedMessage(signed.signer, signed.signature, forged_body)
    )
    with pytest.raises(SecurityError, match="bad signature"):
        decode_envelope(tampered, AUTH)
    # The id is still readable, so the worker can store REJECTED for the caller.
    assert message_head(tampered) == ("t-1", "proj.add")


def test_a_message_signed_by_a_stranger_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stranger").mkdir()
    (tmp_path / "worker").mkdir()
    secure_app(tmp_path / "stranger")
    forged = encode_envelope(Envelope(id="t-1", task="proj.add"), "auth")
    signing.reset()
    secure_app(tmp_path / "worker")
    with pytest.raises(SecurityError, match="not in the certificate store"):
        decode_envelope(forged, AUTH)


def test_a_forged_signer_id_does_not_help(tmp_path: Path) -> None:
    """Claiming the trusted certificate's id while signing with another key fails."""
    secure_app(tmp_path)
    security = signing.active()
    assert security is not None
    trusted_id = security.signer.certificate.id
    stranger = issue("stranger")
    assert isinstance(stranger.key, rsa.RSAPrivateKey)
    inner = encode_envelope(Envelope(id="t-1", task="proj.add"))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    signature = stranger.key.sign(trusted_id.encode() + b"\x00" + inner, pss, hashes.SHA256())
    forged = b"\x00auth\x00" + msgspec.msgpack.encode(
        signing.SignedMessage(trusted_id, signature, inner)
    )
    with pytest.raises(SecurityError, match="bad signature"):
        decode_envelope(forged, AUTH)


def test_garbage_framed_as_auth_is_a_security_error(tmp_path: Path) -> None:
    secure_app(tmp_path)
    with pytest.raises(SecurityError, match="malformed signed message"):
        decode_envelope(b"\x00auth\x00not msgpack at all", AUTH)


def test_keys_rotate_with_two_certificates_in_the_store(tmp_path: Path) -> None:
    old, new = issue("old"), issue("new")
    store = tmp_path / "store"
    store.mkdir()
    for name, issued in (("old", old), ("new", new)):
        issued.write(tmp_path, name)
        (store / f"{name}.pem").write_bytes(issued.cert_pem())
    settings = {
        "security_cert_store": str(store / "*.pem"),
        "task_serializer": "auth",
        "accept_content": ["auth"],
    }
    bodies = []
    for name in ("old", "new"):
        app = Conveyor(
            name,
            broker="memory://",
            security_key=str(tmp_path / f"{name}.key"),
            security_certificate=str(tmp_path / f"{name}.pem"),
            **settings,
        )
        app.setup_security()
        bodies.append(encode_envelope(Envelope(id=name, task="t"), "auth"))
    assert [decode_envelope(body, AUTH).id for body in bodies] == ["old", "new"]
    security = signing.active()
    assert security is not None and len(security.store) == 2


def test_setup_needs_the_auth_serializer_and_every_setting(tmp_path: Path) -> None:
    app = Conveyor("x", broker="memory://")
    with pytest.raises(ConfigurationError, match="task_serializer='auth'"):
        app.setup_security()
    app.conf.update(task_serializer="auth", accept_content=["auth"])
    with pytest.raises(
        ConfigurationError, match="security_key, security_certificate, security_cert_store"
    ):
        app.setup_security()


def test_setup_refuses_a_key_that_is_not_the_certificates(tmp_path: Path) -> None:
    mine, other = issue("mine"), issue("other")
    key, _ = mine.write(tmp_path, "mine")
    _, cert = other.write(tmp_path, "other")
    app = Conveyor(
        "x",
        broker="memory://",
        security_key=str(key),
        security_certificate=str(cert),
        security_cert_store=str(cert),
        task_serializer="auth",
        accept_content=["auth"],
    )
    with pytest.raises(ConfigurationError, match="is not the key of security_certificate"):
        app.setup_security()


def test_setup_refuses_expired_certificates_and_empty_stores(tmp_path: Path) -> None:
    me = issue("me")
    key, cert = me.write(tmp_path, "me")
    expired = issue("old", expired=True)
    _, expired_cert = expired.write(tmp_path, "expired")
    base = {
        "security_key": str(key),
        "security_certificate": str(cert),
        "task_serializer": "auth",
        "accept_content": ["auth"],
    }
    app = Conveyor("x", broker="memory://", security_cert_store=str(expired_cert), **base)
    with pytest.raises(ConfigurationError, match="expired certificate"):
        app.setup_security()
    app.conf.security_cert_store = str(tmp_path / "nothing-*.pem")
    with pytest.raises(ConfigurationError, match="matches no file"):
        app.setup_security()
    app.conf.security_cert_store = str(cert)
    with pytest.raises(ConfigurationError, match="security_digest 'sha-nope'"):
        app.setup_security(digest="sha-nope")


def test_an_auth_message_without_setup_is_a_clear_error() -> None:
    with pytest.raises(SecurityError, match="signing is not set up"):
        decode_envelope(b"\x00auth\x00x", AUTH)
