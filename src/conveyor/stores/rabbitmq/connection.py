"""AMQP connections: URLs as Celery reads them, connecting with retries, and the one
place where py-amqp's and the socket's errors become conveyor's.

``amqp://user:password@host:port/vhost``, ``amqps://`` (TLS) and ``pyamqp://`` (kombu's
name for the same client) are read the way kombu reads them: no path or ``//`` is the
vhost ``/``, ``/name`` is ``name``, ``%2F`` is ``/``; user and password default to
guest/guest, the port to 5672 (5671 with TLS).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import amqp
import amqp.exceptions

from ...exceptions import BrokerUnavailable, ConfigurationError
from ..urls import masked

__all__ = [
    "CONSUMER_TIMEOUT_HINT",
    "AmqpSettings",
    "connect",
    "connection_errors",
    "link_errors",
    "mapped_errors",
    "parse_amqp_url",
    "server_version",
]

logger = logging.getLogger("conveyor.rabbitmq")

T = TypeVar("T")

SCHEMES = ("amqp", "amqps", "pyamqp")
# Query options read from the URL (kombu's names); anything else is refused, so a
# misspelt option is an error at start rather than silently ignored.
_URL_OPTIONS = {"heartbeat", "connect_timeout", "ssl"}

# What a lost or refused connection looks like from py-amqp: the socket's errors,
# py-amqp's own, and the broker closing the connection (e.g. a node shutting down
# sends connection.close 320 CONNECTION_FORCED).
connection_errors: tuple[type[BaseException], ...] = (
    OSError,
    amqp.exceptions.RecoverableConnectionError,
    amqp.exceptions.ConnectionError,
    amqp.exceptions.RecoverableChannelError,
)
# What ends a consumer's link: the above, or the broker closing its channel (py-amqp
# reopens a closed channel by itself, bare: no consumers, its delivery tags void). A
# channel closed under a live consumer is RabbitMQ's consumer_timeout (PRECONDITION_FAILED
# "delivery acknowledgement ... timed out"), or an ack of a tag the channel no longer has.
link_errors: tuple[type[BaseException], ...] = (*connection_errors, amqp.exceptions.ChannelError)

CONSUMER_TIMEOUT_HINT = (
    "RabbitMQ's consumer_timeout closed the channel of a consumer still running a task: "
    "its unacked messages went back to the queue and will run again. RabbitMQ < 3.11.15 "
    "ignores conveyor's x-consumer-timeout: set consumer_timeout above the longest task "
    "in rabbitmq.conf, or off in advanced.config ([{rabbit, [{consumer_timeout, "
    "undefined}]}].) (docs/architecture.md, RabbitMQ)"
)


@dataclass(slots=True)
class AmqpSettings:
    """Everything needed to open a connection, read from the URL and the settings."""

    url: str
    host: str
    port: int
    userid: str
    password: str
    virtual_host: str
    tls: bool | ssl.SSLContext | dict[str, Any] = False
    heartbeat: float = 120.0
    connect_timeout: float = 4.0
    retry_on_startup: bool = True
    max_retries: int | None = 100
    client_properties: dict[str, Any] = field(
        default_factory=lambda: {"product": "conveyor", "connection_name": "conveyor"}
    )

    @property
    def masked_url(self) -> str:
        return masked(self.url)


def _vhost(path: str) -> str:
    if path in ("", "/"):
        return "/"
    return unquote(path[1:]) or "/"


def parse_amqp_url(url: str, **options: Any) -> AmqpSettings:
    """Read an amqp://, amqps:// or pyamqp:// URL; ``options`` are the app's settings
    (``heartbeat``, ``connect_timeout``, ``retry_on_startup``, ``max_retries``,
    ``use_ssl``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(f"not an AMQP URL: {masked(url)!r}")
    if ";" in parts.netloc or "," in parts.netloc:
        raise ConfigurationError(
            f"{masked(url)!r}: several hosts in one AMQP URL are not supported; "
            "put a load balancer or one node's address in broker_url"
        )
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - _URL_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{masked(url)!r}: unknown AMQP URL option(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_URL_OPTIONS))})"
        )
    tls: bool | ssl.SSLContext | dict[str, Any] = scheme == "amqps" or query.get(
        "ssl", ""
    ).lower() in ("1", "true", "yes")
    if options.get("use_ssl"):  # broker_use_ssl: py-amqp's ssl argument, as kombu passes it
        tls = options["use_ssl"]
    try:
        port = parts.port or (5671 if tls else 5672)
        heartbeat = float(query.get("heartbeat", options.get("heartbeat") or 120.0))
        timeout = float(query.get("connect_timeout", options.get("connect_timeout") or 4.0))
    except ValueError as exc:
        raise ConfigurationError(f"{masked(url)!r}: {exc}") from None
    return AmqpSettings(
        url=url,
        host=parts.hostname or "localhost",
        port=port,
        userid=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        virtual_host=_vhost(parts.path),
        tls=tls,
        heartbeat=heartbeat,
        connect_timeout=timeout,
        retry_on_startup=bool(options.get("retry_on_startup", True)),
        max_retries=options.get("max_retries", 100),
    )


@contextmanager
def mapped_errors(settings: AmqpSettings) -> Iterator[None]:
    """Turn py-amqp's errors into conveyor's, once, at the edge (as httpx maps
    httpcore's): a wrong password is a configuration error, a lost node is
    BrokerUnavailable."""
    try:
        yield
    except amqp.exceptions.AccessRefused as exc:
        raise ConfigurationError(
            f"RabbitMQ at {settings.masked_url} refused the login or vhost: {exc}"
        ) from None
    except amqp.exceptions.NotAllowed as exc:
        raise ConfigurationError(
            f"RabbitMQ at {settings.masked_url} does not allow vhost "
            f"{settings.virtual_host!r}: {exc}"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        # A certificate that does not verify will not verify on the next try either.
        raise ConfigurationError(
            f"RabbitMQ at {settings.masked_url}: TLS certificate verification failed: {exc}"
        ) from None
    except connection_errors as exc:
        raise BrokerUnavailable(
            f"RabbitMQ at {settings.masked_url} is unreachable: {exc}", settings.masked_url
        ) from exc


def _open(settings: AmqpSettings) -> amqp.Connection:
    connection = amqp.Connection(
        host=f"{settings.host}:{settings.port}",
        userid=settings.userid,
        password=settings.password,
        virtual_host=settings.virtual_host,
        ssl=settings.tls,
        heartbeat=settings.heartbeat,
        connect_timeout=settings.connect_timeout,
        client_properties=settings.client_properties,
        confirm_publish=False,
    )
    connection.connect()
    return connection


def connect(settings: AmqpSettings, *, first: bool, give_up: Callable[[], bool] | None = None
            ) -> amqp.Connection:
    """Open a connection, retrying with a capped backoff while RabbitMQ is away.

    The first connection of a process retries only when ``broker_connection_retry_on_startup``
    is on (Celery's setting, default on); reconnections always retry, up to
    ``broker_connection_max_retries`` (None: forever) or until ``give_up()`` says so (a
    worker shutting down). Login and vhost errors are never retried."""
    attempt = 0
    while True:
        try:
            with mapped_errors(settings):
                return _open(settings)
        except BrokerUnavailable:
            attempt += 1
            out_of_tries = settings.max_retries is not None and attempt > settings.max_retries
            if (first and not settings.retry_on_startup) or out_of_tries:
                raise
            if give_up is not None and give_up():
                raise
            delay = min(0.1 * 2 ** min(attempt, 5), 2.0)
            logger.warning(
                "RabbitMQ at %s unreachable, retrying in %.1fs (attempt %d)",
                settings.masked_url, delay, attempt,
            )
            time.sleep(delay)


def server_version(connection: amqp.Connection) -> tuple[int, ...]:
    """The node's version from the connection's server properties, e.g. (3, 10, 8)."""
    raw = connection.server_properties.get("version", "0")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    numbers: list[int] = []
    for piece in text.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)
