"""Redis plumbing shared by the Redis broker and the Redis result backend.

redis-py parses URLs (``redis://``, ``rediss://``, ``unix://``, credentials), connects,
speaks TLS and parses replies with hiredis. Its high-level client costs ~90 µs a call
here, against ~40 µs for the same command sent on a raw connection, so the hot path
(publish, fetch, ack) goes through :class:`RedisLink`: one dedicated connection that can
also send commands *without waiting* for their replies (write-behind). An ack is then
on its way to Redis the moment a task ends, at the cost of one ``send()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import select
import socket
import ssl
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import hiredis
import redis
from redis._parsers.base import BaseParser
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from ...exceptions import BrokerUnavailable, ConfigurationError
from ..urls import masked
from .topology import RedisOptions, is_cluster_url, is_sentinel_url, sentinel_pool

__all__ = [
    "RedisLink",
    "RedisUnavailable",
    "Script",
    "load_script",
    "pool_from_url",
    "ssl_options",
]

logger = logging.getLogger("conveyor.redis")

Command = tuple[Any, ...]

# Errors after which the connection is dropped and made again.
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def text(value: Any) -> str:
    """A reply (bytes, as redis-py returns them without decode_responses) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _error_reply(reply: Any) -> ResponseError:
    """An error reply as redis-py's exception class for it (NoScriptError, AskError...),
    parsed by redis-py's own table, so callers catch what they caught before."""
    parse: Any = BaseParser.parse_error  # untyped in redis-py
    error: ResponseError = parse(str(reply))
    return error


def _pack(commands: Sequence[Command]) -> bytes:
    # hiredis packs in C; redis-py's own packer costs ~14 µs a command in Python.
    return b"".join([hiredis.pack_command(command) for command in commands])


class Script:
    """A Lua script from a ``.lua`` file, called by its SHA1."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> Command:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


def load_script(package: str, name: str) -> Script:
    source = resources.files(package).joinpath("lua", f"{name}.lua").read_text()
    return Script(name, source)


# Bytes asked of the socket per read (redis-py's default socket_read_size).
_READ_SIZE = 65536

# Between two reconnect attempts while a failover is under way.
_FAILOVER_BACKOFF = 0.25


def failover_retry(seconds: float) -> Retry:
    """Retry a lost connection for about ``seconds``: long enough for Sentinel to elect a
    new master (down-after-milliseconds plus the election, a few seconds)."""
    attempts = max(1, int(seconds / _FAILOVER_BACKOFF))
    return Retry(ExponentialBackoff(cap=_FAILOVER_BACKOFF, base=0.05), attempts)


class RedisUnavailable(BrokerUnavailable, redis.ConnectionError):
    """Redis cannot be reached. A :class:`BrokerUnavailable` for conveyor's callers, and
    still a redis-py ``ConnectionError`` for redis-py's own retry and reconnect logic."""


class _MappedErrors(AbstractConnection):
    """Maps a failed connect to :class:`RedisUnavailable` (the message names the URL,
    password masked, and the reason in a line: "cannot reach the broker at
    redis://localhost:1/0: connection refused"). Errors on a connection already made are
    mapped where they surface, at no cost to a call that succeeds: :class:`RedisLink`'s
    own handlers and :class:`RedisClient`. ``RedisUnavailable`` is still a redis-py
    ``ConnectionError``, so redis-py's retry and reconnect logic sees what it always saw."""

    conveyor_url = ""
    conveyor_role = "the broker"

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().connect_check_health(*args, **kwargs)
        except RedisUnavailable:
            raise
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc, type(self)) from exc


def unavailable(exc: BaseException, where: Any) -> RedisUnavailable:
    """``exc`` (a redis-py or socket error) as :class:`RedisUnavailable`, naming the URL
    and role of ``where``: a mapped connection class, or a pool of them."""
    if isinstance(exc, RedisUnavailable):
        return exc
    cls = getattr(where, "connection_class", where)
    url = getattr(cls, "conveyor_url", "")
    role = getattr(cls, "conveyor_role", "the broker")
    return RedisUnavailable(f"cannot reach {role} at {url}: {_reason(exc)}", url=url, role=role)


class RedisClient(redis.Redis):
    """redis-py's client, its connection errors mapped to :class:`RedisUnavailable` (after
    its own retries), for single commands, scripts and pipelines."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        parent: Any = super()  # redis-py leaves this one untyped
        try:
            return parent.execute_command(*args, **options)
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc, self.connection_pool) from exc

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _MappedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


class _MappedPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc, self.connection_pool) from exc


def _reason(exc: BaseException) -> str:
    """The cause in a few words: the socket error's text when there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, redis.TimeoutError):
        return "timed out"
    text = str(exc).strip().rstrip(".")
    if not text:
        return type(exc).__name__
    # "Connection refused" reads "connection refused" mid-line; "TTL exhausted" stays.
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


# Celery's broker_use_ssl / redis_backend_use_ssl keys for Redis (redis-py's names).
SSL_OPTIONS = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
)
_CERT_REQS = {
    "none": ssl.CERT_NONE,
    "cert_none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "cert_optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
    "cert_required": ssl.CERT_REQUIRED,
}


def ssl_options(value: Any, setting: str) -> dict[str, Any] | None:
    """Read ``broker_use_ssl`` / ``redis_backend_use_ssl`` as Celery does: a dict of
    ``ssl_*`` options (``ssl_cert_reqs`` an ``ssl.CERT_*`` constant or its name), or True
    for TLS verified against the system's CAs. A key conveyor does not know is an error,
    never ignored."""
    if value is None or value is False:
        return None
    if value is True:
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{setting} must be a dict of ssl_* options or True")
    unknown = sorted(set(value) - set(SSL_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"{setting}: unknown option {', '.join(unknown)}; expected {', '.join(SSL_OPTIONS)}"
        )
    options = dict(value)
    reqs = options.get("ssl_cert_reqs", ssl.CERT_REQUIRED)  # verify unless told not to
    if isinstance(reqs, str):
        if reqs.lower() not in _CERT_REQS:
            raise ConfigurationError(
                f"{setting}: ssl_cert_reqs {reqs!r}: expected ssl.CERT_REQUIRED, "
                "CERT_OPTIONAL or CERT_NONE"
            )
        reqs = _CERT_REQS[reqs.lower()]
    options["ssl_cert_reqs"] = ssl.VerifyMode(reqs)
    return options


def _connection_class(url: str, role: str, tls: bool) -> type[AbstractConnection]:
    base: type[Any] = Connection
    if url.startswith("unix:"):
        if tls:
            raise ConfigurationError("TLS options were given for a unix:// socket URL")
        base = UnixDomainSocketConnection
    elif url.startswith("rediss:") or tls:
        base = SSLConnection
    return _mapped(base, url, role)


def _mapped(base: type[Any], url: str, role: str) -> type[AbstractConnection]:
    attributes = {"conveyor_url": masked(url), "conveyor_role": role}
    return type(f"Mapped{base.__name__}", (_MappedErrors, base), attributes)


def pool_from_url(
    url: str,
    transport_options: Mapping[str, Any] | None = None,
    *,
    role: str = "the broker",
    tls: Mapping[str, Any] | None = None,
    **options: Any,
) -> ConnectionPool:
    """A connection pool for a single server (``redis://``, ``rediss://``, ``unix://``) or
    for the master a set of sentinels name (``sentinel://``); ``transport_options`` are
    Celery's ``broker_transport_options`` / ``result_backend_transport_options``. A
    single server's connections report a failed connect as :class:`RedisUnavailable`;
    ``role`` names the store in that message ("the broker", "the result backend").
    ``tls``: options read by :func:`ssl_options`; they turn TLS on even for redis://
    (as Celery's ``broker_use_ssl`` does)."""
    if is_cluster_url(url):
        raise ConfigurationError(
            "a redis+cluster:// URL has no single connection pool; the cluster client "
            "is made by the store (this is a bug if you see it)"
        )
    read = RedisOptions.read(url, transport_options)
    # health_check_interval keeps idle pooled connections honest after a Redis restart.
    options.setdefault("health_check_interval", 10)
    # redis-py 8 caps a pool at 100 connections; each consume loop of a worker holds one
    # (-P threads or gevent with -c 100 needs more), so no cap, as before redis-py 8.
    options.setdefault("max_connections", 2**31)
    if not url.startswith("unix:"):
        options.setdefault("socket_keepalive", True)  # TCP only: notice a vanished server
    if read.failover_timeout > 0:
        options["retry"] = failover_retry(read.failover_timeout)
        options["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError]
    if is_sentinel_url(url):
        # As kombu and Celery read it: broker_use_ssl / redis_backend_use_ssl make the
        # connections to the master (and to a replica it names after a failover) TLS;
        # sentinels that speak TLS themselves are told so in the ``sentinel_kwargs``
        # transport option ({"ssl": True, "ssl_ca_certs": ...}), passed to them as is.
        options.update(tls or {})
        managed = SentinelManagedSSLConnection if tls is not None else SentinelManagedConnection
        options["connection_class"] = _mapped(managed, url, role)
        return sentinel_pool(url, read, **options)
    options.update(tls or {})
    options["connection_class"] = _connection_class(url, role, tls is not None)
    return ConnectionPool.from_url(url, **options)


def replicated_call(link: RedisLink, commands: Sequence[Command], options: RedisOptions) -> None:
    """Run ``commands`` and, on the same connection, WAIT until
    ``options.wait_for_replicas`` replicas hold them; raise BrokerUnavailable when they
    do not within ``wait_timeout_ms`` (the writes are on the master and may yet be lost
    at a failover: the caller must not count them as sent). One connection for both, so
    a WAIT can never confirm writes that went to a master that died meanwhile."""
    acked = link.call_replicated(commands, options.wait_for_replicas, options.wait_timeout_ms)
    if acked < options.wait_for_replicas:
        raise BrokerUnavailable(
            f"publish reached {acked} of {options.wait_for_replicas} replica(s) within "
            f"{options.wait_timeout_ms} ms (wait_for_replicas): it may be lost at a failover"
        )


# Replies of a Redis Cluster node that does not (or not yet) serve a key's slot: redis-py
# parses MOVED/ASK/TRYAGAIN/CLUSTERDOWN into these classes (the message loses the word;
# MovedError is an AskError).
_REDIRECTS = (AskError, TryAgainError, ClusterDownError)
# A script that touched a key it did not declare (the list named in an in-flight record)
# while that key's slot was half moved: Redis stops the script there. Ours keep each
# message either leased or queued at every step (release.lua, reclaim.lua), so the
# script is safe to run again once the slot has moved.
SCRIPT_KEY_MOVING = "Script attempted to access a non local key"


def is_redirect(exc: ResponseError) -> bool:
    return isinstance(exc, _REDIRECTS) or str(exc).startswith(
        ("MOVED ", "ASK ", "CLUSTERDOWN", SCRIPT_KEY_MOVING)
    )


class Redirected(ResponseError):
    """Write-behind commands a cluster node answered with MOVED/ASK/TRYAGAIN/CLUSTERDOWN
    (its slot moved, or a failover is under way): they must be sent again elsewhere."""

    def __init__(self, commands: list[Command]) -> None:
        super().__init__(f"{len(commands)} command(s) redirected by the cluster")
        self.commands = commands


class RedisLink:
    """One connection of our own, with write-behind sends and scripts loaded on connect.

    Not thread-safe: each consumer loop owns one. Commands sent with :meth:`send` are kept
    until their replies are read; if the connection drops first they are sent again on
    the next connection, so every command sent this way must be idempotent (ours are:
    DEL/RPUSH/SET/HDEL and scripts built from them).
    """

    def __init__(self, pool: ConnectionPool, scripts: Iterable[Script] = ()) -> None:
        self._pool = pool
        self._scripts = list(scripts)
        # redis-py's connection class is only partly typed, hence Any.
        self._conn: Any = None
        # After the connect (redis-py's handshake: AUTH, SELECT, TLS), the link reads
        # and writes the socket itself: redis-py's send and read paths add a liveness
        # poll() and several Python layers per command, a third of the hot path's own
        # time (bench/profile_drain.py, strace -c of a draining child).
        self._sock: Any = None
        self._reader: Any = None
        self._unconfirmed: deque[Command] = deque()

    # connection ---------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            # Made as the pool makes its own, but not counted against its max_connections:
            # the pool never gets it back (reset() drops it), so counting it ran the pool
            # out after a hundred reconnects (redis-py's MaxConnectionsError, for good).
            pool: Any = self._pool
            conn: Any = pool.connection_class(**pool.connection_kwargs)
            conn.connect()
            if self._scripts:
                conn.send_packed_command(
                    conn.pack_commands([("SCRIPT", "LOAD", s.source) for s in self._scripts])
                )
                for _ in self._scripts:
                    conn.read_response()
            self._conn = conn
            self._sock = conn._sock
            self._reader = hiredis.Reader()
            if self._unconfirmed:
                resend, self._unconfirmed = list(self._unconfirmed), deque()
                self.send(resend)
        return self._conn

    def move_to(self, pool: ConnectionPool) -> None:
        """Use ``pool`` from now on (a cluster slot moved to another node); commands
        sent but not confirmed go again on the new connection."""
        self.reset()
        self._pool = pool

    def reset(self) -> None:
        """Drop the connection after an error; the next call makes a new one."""
        if self._conn is not None:
            with contextlib.suppress(Exception):  # best effort on a broken socket
                self._conn.disconnect()
            self._conn = None
            self._sock = self._reader = None

    def close(self) -> None:
        with contextlib.suppress(*CONNECTION_ERRORS):
            self.drain()
        self.reset()

    # commands -----------------------------------------------------------------------
    def send(self, commands: Sequence[Command]) -> None:
        """Send without waiting for replies (they are read by the next call or drain)."""
        conn = self._conn
        if conn is None:
            # Kept before connecting: a connect that fails (Redis down) must not drop an
            # ack or a result; the connect that succeeds sends them with the rest.
            self._unconfirmed.extend(commands)
            self._connection()
            return
        try:
            self._sock.sendall(_pack(commands))
        except CONNECTION_ERRORS as exc:
            self._unconfirmed.extend(commands)
            self.reset()
            raise unavailable(exc, self._pool) from exc
        self._unconfirmed.extend(commands)

    def drain(self) -> None:
        """Read the replies of everything sent so far; log (never raise) error replies.

        After a dropped connection this reconnects first, which sends the unconfirmed
        commands again: acks and results are never lost to a Redis restart."""
        if not self._unconfirmed:
            return
        self._connection()
        redirected: list[Command] = []
        try:
            while self._unconfirmed:
                try:
                    self._read()
                except ResponseError as exc:
                    if is_redirect(exc):
                        redirected.append(self._unconfirmed[0])
                    else:
                        logger.error("redis refused %s: %s", self._unconfirmed[0][0], exc)
                self._unconfirmed.popleft()
        except CONNECTION_ERRORS as exc:
            self.reset()
            raise unavailable(exc, self._pool) from exc
        if redirected:  # only on a Redis Cluster: the caller sends them to the right node
            raise Redirected(redirected)

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def read_arrived(self) -> None:
        """What :meth:`drain` does, without blocking: read the replies already waiting
        on the socket (the results link behind AMQP acks reads them before each write).
        A connection the server closed (a Redis restart, CLIENT KILL, a timeout) raises
        here, before anything else is written to it."""
        if self._sock is None:
            return
        reader = self._reader
        try:
            while True:
                reply = reader.gets()
                if reply is False:
                    data = self._ready()
                    if data is None:
                        return
                    if not data:
                        raise redis.ConnectionError("the connection was closed by the server")
                    reader.feed(data)
                    continue
                if not self._unconfirmed:
                    continue  # not ours (a push): read, to keep in step
                if isinstance(reply, hiredis.ReplyError):
                    logger.error("redis refused %s: %s", self._unconfirmed[0][0], reply)
                self._unconfirmed.popleft()
        except CONNECTION_ERRORS as exc:
            self.reset()
            raise unavailable(exc, self._pool) from exc

    def _ready(self) -> bytes | None:
        """What the socket holds now (b"": closed by the server), or None: nothing yet."""
        sock = self._sock
        if sock.gettimeout() is None and not isinstance(sock, ssl.SSLSocket):
            try:  # one syscall; a blocking socket honours MSG_DONTWAIT
                data: bytes = sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            return data
        # TLS takes no recv flags, and a socket with a timeout polls before it reads
        # (up to that timeout): ask poll() first, without waiting.
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            if not poller.poll(0):
                return None
        data = sock.recv(_READ_SIZE)
        return data

    def call(self, command: Command) -> Any:
        """Send one command after anything pending and return its reply."""
        self.drain()
        self._connection()
        try:
            self._sock.sendall(hiredis.pack_command(command))
            return self._read()
        except NoScriptError:
            raise
        except ResponseError:
            raise
        except CONNECTION_ERRORS as exc:
            self.reset()
            raise unavailable(exc, self._pool) from exc

    def call_all(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write after anything pending; return their replies
        (an error reply is raised once all are read, so the connection stays in step)."""
        replies = self.exchange(commands)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    def call_replicated(self, commands: Sequence[Command], replicas: int, timeout_ms: int) -> int:
        """Run ``commands``, then WAIT on the same connection; how many replicas hold them."""
        return int(self.call_all([*commands, ("WAIT", replicas, timeout_ms)])[-1])

    def exchange(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write after anything pending; return their replies,
        an error reply in its command's place."""
        RedisLink.drain(self)  # not a subclass's: SlotLink follows what this raises
        if not commands:
            return []
        self._connection()
        replies: list[Any] = []
        try:
            self._sock.sendall(_pack(commands))
            for _ in commands:
                try:
                    replies.append(self._read())
                except ResponseError as exc:
                    replies.append(exc)
        except CONNECTION_ERRORS as exc:
            self.reset()
            raise unavailable(exc, self._pool) from exc
        return replies

    def _read(self) -> Any:
        """The next reply; an error reply is raised as redis-py's class for it
        (NoScriptError, MOVED/ASK, ...), a closed connection as ConnectionError."""
        reader = self._reader
        reply = reader.gets()
        while reply is False:
            data = self._sock.recv(_READ_SIZE)
            if not data:
                raise redis.ConnectionError("the connection was closed by the server")
            reader.feed(data)
            reply = reader.gets()
        if isinstance(reply, hiredis.ReplyError):
            raise _error_reply(reply)
        return reply

    def call_packed(self, packed: Iterable[bytes], replies: int) -> list[Any]:
        """Write commands already packed in RESP (each item of ``packed`` in turn) after
        anything pending, and return their ``replies`` replies; an error reply is raised
        once all are read, so the connection stays in step. For a hot path that packs
        its commands from bytes made once (the producer's publish: transport.py)."""
        self.drain()
        self._connection()
        out: list[Any] = []
        error: ResponseError | None = None
        try:
            for data in packed:
                self._sock.sendall(data)
            for _ in range(replies):
                try:
                    out.append(self._read())
                except ResponseError as exc:
                    error = error or exc
        except CONNECTION_ERRORS as exc:
            self.reset()
            raise unavailable(exc, self._pool) from exc
        if error is not None:
            raise error
        return out

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return self.call(script.command(keys, args))
        except NoScriptError:
            # Someone ran SCRIPT FLUSH; EVAL caches the script again.
            return self.call(("EVAL", script.source, len(keys), *keys, *args))
