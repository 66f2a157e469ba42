"""Signed messages: the ``auth`` serializer, in the shape of Celery's message signing.

Set up as in Celery::

    app.conf.update(
        security_key="/etc/ssl/private/worker.key",
        security_certificate="/etc/ssl/certs/worker.pem",
        security_cert_store="/etc/ssl/certs/*.pem",
        security_digest="sha256",
        task_serializer="auth",
        accept_content=["auth"],
    )
    app.setup_security()

A sender signs each message with its private key; a worker runs a message only when the
signature verifies against a certificate in its store (a glob of PEM files). Anything
else (unsigned, signed by a certificate the store lacks, altered after signing) is a
:class:`~conveyor.exceptions.MessageError`, so the worker dead-letters it with the reason
and stores REJECTED. Two certificates in the store let keys be rotated: senders move to
the new key while workers still accept the old one.

On the wire a signed message is the inner message (the envelope serialized with
``security_serializer``, JSON by default, framed as usual) wrapped in a msgpack record
``{signer, signature, body}`` and framed as ``auth``. The signature covers the signer's
id and the inner bytes, so neither can be swapped. The signer id is Celery's:
``"<issuer>:<serial>"``.

As in Celery, the setup is global to the process (the ``auth`` serializer is one), and
``cryptography`` is an optional extra: ``pip install conveyor[auth]``.
"""

from __future__ import annotations

import datetime
import glob
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from .exceptions import ConfigurationError, SecurityError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import (
        CertificatePublicKeyTypes,
        PrivateKeyTypes,
    )

__all__ = [
    "CertStore",
    "Certificate",
    "Signer",
    "active",
    "reset",
    "setup_security",
    "sign",
    "verify",
]

# The serializers an inner message may use: never pickle, whatever accept_content says,
# since a signature proves who sent a message, not that it is harmless to unpickle.
INNER_SERIALIZERS = frozenset({"json", "msgpack"})


class SignedMessage(msgspec.Struct, array_like=True):
    signer: str
    signature: bytes
    body: bytes


_encode_signed = msgspec.msgpack.Encoder().encode
_decode_signed = msgspec.msgpack.Decoder(SignedMessage).decode


def _crypto() -> Any:
    try:
        from cryptography import x509
    except ImportError:
        raise ConfigurationError(
            "message signing needs the cryptography package: pip install 'conveyor[auth]'"
        ) from None
    return x509


def _hash(digest: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    try:
        return getattr(hashes, digest.upper().replace("-", "_"))()
    except (AttributeError, TypeError):
        raise ConfigurationError(
            f"security_digest {digest!r} is not a hash cryptography knows (e.g. 'sha256')"
        ) from None


class Certificate:
    """An X.509 certificate, known by Celery's id for it: ``"<issuer>:<serial>"``."""

    def __init__(self, pem: bytes) -> None:
        loader = _crypto()
        try:
            self.cert: x509.Certificate = loader.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise ConfigurationError(f"invalid certificate: {exc}") from None
        self.id = f"{self.cert.issuer.rfc4514_string()}:{self.cert.serial_number}"

    @property
    def public_key(self) -> CertificatePublicKeyTypes:
        key: CertificatePublicKeyTypes = self.cert.public_key()
        return key

    def has_expired(self) -> bool:
        now = datetime.datetime.now(datetime.UTC)
        return not (self.cert.not_valid_before_utc <= now <= self.cert.not_valid_after_utc)

    def verify(self, data: bytes, signature: bytes, digest: str) -> None:
        """Raise :class:`SecurityError` unless ``signature`` is this certificate's
        key signing ``data``."""
        from cryptography.exceptions import InvalidSignature

        if self.has_expired():
            raise SecurityError(f"certificate {self.id!r} has expired")
        try:
            _verify(self.public_key, data, signature, digest)
        except (InvalidSignature, ValueError, TypeError):
            raise SecurityError(f"bad signature (signer {self.id!r})") from None


class CertStore:
    """The certificates a worker trusts, by id (Celery's ``FSCertStore``: a glob of PEM
    files, or a directory). Expired or duplicate certificates are refused when loaded."""

    def __init__(self, certificates: Iterable[Certificate] = ()) -> None:
        self._certs: dict[str, Certificate] = {}
        for certificate in certificates:
            self.add(certificate)

    @classmethod
    def from_glob(cls, pattern: str) -> CertStore:
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise ConfigurationError(f"security_cert_store {pattern!r} matches no file")
        store = cls()
        for path in paths:
            with open(path, "rb") as file:
                certificate = Certificate(file.read())
            if certificate.has_expired():
                raise ConfigurationError(f"expired certificate in the store: {path}")
            store.add(certificate)
        return store

    def add(self, certificate: Certificate) -> None:
        if certificate.id in self._certs:
            raise ConfigurationError(f"duplicate certificate {certificate.id!r}")
        self._certs[certificate.id] = certificate

    def __getitem__(self, signer: str) -> Certificate:
        try:
            return self._certs[signer]
        except KeyError:
            raise SecurityError(
                f"signed by {signer!r}, which is not in the certificate store"
            ) from None

    def __len__(self) -> int:
        return len(self._certs)


class Signer:
    """A private key and its certificate: signs what this process sends."""

    def __init__(self, key_pem: bytes, certificate: Certificate, password: bytes | None) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            self.key: PrivateKeyTypes = load_pem_private_key(key_pem, password=password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid private key (security_key): {exc}") from None
        if not _same_key(self.key, certificate):
            raise ConfigurationError(
                f"security_key is not the key of security_certificate {certificate.id!r}"
            )
        self.certificate = certificate

    def sign(self, data: bytes, digest: str) -> bytes:
        return _sign(self.key, data, digest)


@dataclass(frozen=True)
class Security:
    signer: Signer
    store: CertStore
    digest: str
    serializer: str


_active: Security | None = None


def active() -> Security | None:
    return _active


def reset() -> None:
    """Turn signing off in this process (tests)."""
    global _active
    _active = None


def setup_security(conf: Mapping[str, Any], **overrides: Any) -> Security:
    """Read the ``security_*`` settings (or ``overrides``, named as in Celery's
    ``setup_security``: key, key_password, cert, store, digest, serializer) and turn on
    the ``auth`` serializer in this process."""
    global _active
    _crypto()
    if conf["task_serializer"] != "auth" or list(conf["accept_content"]) != ["auth"]:
        raise ConfigurationError(
            "setup_security needs task_serializer='auth' and accept_content=['auth'] "
            f"(found {conf['task_serializer']!r} and {list(conf['accept_content'])!r})"
        )
    key = overrides.get("key") or conf["security_key"]
    cert = overrides.get("cert") or conf["security_certificate"]
    store = overrides.get("store") or conf["security_cert_store"]
    missing = [
        name
        for name, value in (
            ("security_key", key),
            ("security_certificate", cert),
            ("security_cert_store", store),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(f"setup_security: {', '.join(missing)} not set")
    digest = str(overrides.get("digest") or conf["security_digest"])
    _hash(digest)
    serializer = str(overrides.get("serializer") or conf["security_serializer"])
    if serializer not in INNER_SERIALIZERS:
        raise ConfigurationError(
            f"security_serializer {serializer!r}: expected one of {sorted(INNER_SERIALIZERS)}"
        )
    password = overrides.get("key_password") or conf["security_key_password"]
    if isinstance(password, str):
        password = password.encode()
    certificate = Certificate(_read(cert, "security_certificate"))
    signer = Signer(_read(key, "security_key"), certificate, password)
    _active = Security(signer, CertStore.from_glob(str(store)), digest, serializer)
    return _active


def _read(path: Any, setting: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigurationError(f"{setting}: cannot read {path!r}: {exc.strerror}") from None


def _security() -> Security:
    if _active is None:
        raise SecurityError(
            "an 'auth' (signed) message, but signing is not set up in this process: "
            "call app.setup_security()"
        )
    return _active


def sign(inner: bytes) -> bytes:
    """Wrap an already serialized message (``security_serializer``) in a signature."""
    security = _security()
    signer_id = security.signer.certificate.id
    signature = security.signer.sign(_signed_bytes(signer_id, inner), security.digest)
    return _encode_signed(SignedMessage(signer_id, signature, inner))


def verify(payload: bytes) -> bytes:
    """The inner message of a signed one, or :class:`SecurityError` with the reason."""
    security = _security()
    try:
        signed = _decode_signed(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SecurityError(f"malformed signed message: {exc}") from None
    certificate = security.store[signed.signer]
    certificate.verify(
        _signed_bytes(signed.signer, signed.body), signed.signature, security.digest
    )
    return signed.body


def inner_serializer() -> str:
    return _security().serializer


def _signed_bytes(signer: str, body: bytes) -> bytes:
    return signer.encode() + b"\x00" + body


# key types ------------------------------------------------------------------------------
def _sign(key: Any, data: bytes, digest: str) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        signature: bytes = key.sign(data, _pss(digest, padding), _hash(digest))
        return signature
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ec_signature: bytes = key.sign(data, ec.ECDSA(_hash(digest)))
        return ec_signature
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        ed_signature: bytes = key.sign(data)
        return ed_signature
    raise ConfigurationError(f"security_key: cannot sign with a {type(key).__name__}")


def _verify(public_key: Any, data: bytes, signature: bytes, digest: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, _pss(digest, padding), _hash(digest))
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(_hash(digest)))
    elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        public_key.verify(signature, data)
    else:
        raise TypeError(type(public_key).__name__)


def _pss(digest: str, padding: Any) -> Any:
    # PSS, as Celery signs with RSA keys since 5.x.
    return padding.PSS(mgf=padding.MGF1(_hash(digest)), salt_length=padding.PSS.MAX_LENGTH)


def _same_key(key: Any, certificate: Certificate) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def raw(public: Any) -> bytes:
        der: bytes = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return der

    return raw(key.public_key()) == raw(certificate.public_key)
