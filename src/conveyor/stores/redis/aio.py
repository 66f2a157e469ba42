"""An asyncio Redis link for the async client's sends, reads and waits (stores/aio.py).

Not redis.asyncio: measured here, one ``adelay`` through it cost ~630 µs against ~36 µs
for the sync ``delay`` (its pool, locks and parser are Python), and 1,000 sends gathered
at once held the loop for ~490 ms. This link does what the sync
:class:`~conveyor.stores.redis.connection.RedisLink` does, on the loop: commands packed
by hiredis are written on one connection, once per turn of the loop (so a thousand
concurrent sends are one pipeline, one system call), and an :class:`asyncio.Protocol`
parses the replies with hiredis and hands each to its waiter, in order.

Waits (``BLMOVE key key``, as in the sync backend) block a connection, so they run on
connections of their own: first a plain ``LINDEX`` on the shared one (a result already
there costs no blocking connection), then a blocking slice of at most ``_WAIT_SLICE``
seconds on one of at most ``WAITING`` blocking connections per loop.

A connection belongs to the loop that made it, so each store keeps its connections per
loop and closes them when that loop shuts down (``asyncio.run`` and uvicorn call
``shutdown_asyncgens`` first). Connection errors become
:class:`~conveyor.stores.redis.connection.RedisUnavailable`, as on the sync side.

Served natively: ``redis://`` and ``unix://`` URLs. TLS (``rediss://``, ``*_use_ssl``)
and Sentinel URLs fall back to a thread (stores/aio.py), as other stores do.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import hiredis
from redis.connection import ConnectionPool, parse_url
from redis.exceptions import NoScriptError, ResponseError

from .connection import Command, Script, unavailable
from .topology import is_sentinel_url

__all__ = ["WAITING", "AsyncLink"]

# Blocking connections per loop, and the longest single block on one.
WAITING = 64
_WAIT_SLICE = 1.0


class _Unavailable(ConnectionError):
    """The connection failed or was lost (mapped to RedisUnavailable by AsyncLink)."""


class _Protocol(asyncio.Protocol):
    """One Redis connection: commands in, replies out, in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            waiter = self.waiting.popleft()
            if waiter.done():  # its caller gave up (a timeout): the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                text = str(reply)
                error = NoScriptError if text.startswith("NOSCRIPT") else ResponseError
                waiter.set_exception(error(text))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or _Unavailable("connection closed by the server")
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(_Unavailable(str(self.lost)))

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        return self.send_many(packed, 1)[0]

    def send_many(self, packed: bytes, count: int) -> list[asyncio.Future[Any]]:
        """Write ``count`` packed commands; a future for each reply, in order."""
        if self.lost is not None or self.transport is None:
            raise _Unavailable(str(self.lost or "not connected"))
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(count)]
        self.waiting.extend(waiters)
        # Written once per turn of the loop: a thousand sends in one turn are one write,
        # one system call, instead of a thousand.
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(packed)
        return waiters

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and self.lost is None:
            self.transport.write(b"".join(outgoing))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _LoopLinks:
    """One loop's connections: a shared one for commands, a pool of blocking ones."""

    def __init__(self) -> None:
        self.shared: _Protocol | None = None
        self.connecting: asyncio.Lock = asyncio.Lock()
        self.idle: list[_Protocol] = []
        self.blocking = asyncio.Semaphore(WAITING)
        self.all: weakref.WeakSet[_Protocol] = weakref.WeakSet()

    def close(self) -> None:
        for protocol in list(self.all):
            protocol.close()


class AsyncLink:
    """The async side of one Redis store (a transport or a result backend)."""

    def __init__(self, url: str, pool: ConnectionPool, tls: Mapping[str, Any] | None) -> None:
        self.url = url
        self.pool = pool  # the sync pool: names the URL and role in error messages
        self.native = not tls and url.startswith(("redis://", "unix://"))
        self.native = self.native and not is_sentinel_url(url)
        self._params: dict[str, Any] = _parse_url(url) if self.native else {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopLinks] = (
            weakref.WeakKeyDictionary()
        )
        # The loop of the last call, and its links (almost always the one asked for next).
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopLinks] | None = None

    # connections ------------------------------------------------------------------------
    def _links(self) -> _LoopLinks:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        links = self._loops.get(loop)
        if links is None:
            links = self._loops[loop] = _LoopLinks()
            _close_with_loop(links)
        self._last = (weakref.ref(loop), links)
        return links

    async def _connect(self, links: _LoopLinks) -> _Protocol:
        loop = asyncio.get_running_loop()
        params = self._params
        try:
            if "path" in params:
                _, protocol = await loop.create_unix_connection(_Protocol, params["path"])
            else:
                host, port = params.get("host", "localhost"), params.get("port", 6379)
                _, protocol = await loop.create_connection(_Protocol, host, port)
            links.all.add(protocol)
            setup: list[Command] = []
            if params.get("password"):
                user = params.get("username")
                setup.append(("AUTH", user, params["password"]) if user else
                             ("AUTH", params["password"]))
            if params.get("db"):
                setup.append(("SELECT", params["db"]))
            for command in setup:
                await protocol.send(hiredis.pack_command(command))
            return protocol
        except (OSError, _Unavailable) as exc:
            raise unavailable(exc, self.pool) from exc

    async def _shared(self) -> _Protocol:
        links = self._links()
        protocol = links.shared
        if protocol is None or protocol.lost is not None:
            async with links.connecting:
                protocol = links.shared
                if protocol is None or protocol.lost is not None:
                    protocol = links.shared = await self._connect(links)
        return protocol

    # commands ---------------------------------------------------------------------------
    async def call(self, command: Command) -> Any:
        """Send ``command`` on the shared connection (pipelined with every other caller's)
        and return its reply; one reconnect on a lost connection, as the sync link."""
        packed = hiredis.pack_command(command)
        for attempt in (1, 2):
            protocol = await self._shared()
            try:
                return await protocol.send(packed)
            except _Unavailable as exc:
                if attempt == 2:
                    raise unavailable(exc, self.pool) from exc
        raise AssertionError("unreachable")

    async def script(self, script: Script, command: Command) -> Any:
        try:
            return await self.call(command)
        except NoScriptError:
            # Not cached on this server yet (or SCRIPT FLUSH): EVAL caches it.
            return await self.call(("EVAL", script.source, *command[2:]))

    async def pipeline(self, commands: list[Command]) -> list[Any]:
        """Replies to ``commands``, sent in one write."""
        packed = b"".join(hiredis.pack_command(command) for command in commands)
        for attempt in (1, 2):
            protocol = await self._shared()
            try:
                return list(await asyncio.gather(*protocol.send_many(packed, len(commands))))
            except _Unavailable as exc:
                if attempt == 2:
                    raise unavailable(exc, self.pool) from exc
        raise AssertionError("unreachable")

    async def blmove_wait(self, key: str, timeout: float | None) -> bytes | None:
        """Wait until list ``key`` has an element, leaving it there; None on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        links = self._links()
        while True:
            found = await self.call(("LINDEX", key, 0))
            if found is not None:
                return bytes(found)
            left = _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - loop.time())
            if left <= 0:
                return None
            async with links.blocking:
                protocol = links.idle.pop() if links.idle else await self._connect(links)
                try:
                    blmove: Any = ("BLMOVE", key, key, "RIGHT", "LEFT", f"{left:.3f}")
                    value = await protocol.send(hiredis.pack_command(blmove))
                except _Unavailable as exc:
                    raise unavailable(exc, self.pool) from exc
                except BaseException:
                    protocol.close()  # cancelled mid-block: its reply would come later
                    raise
                links.idle.append(protocol)
            if value is not None:
                return bytes(value)


def _parse_url(url: str) -> dict[str, Any]:
    parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
    return parsed


def _close_with_loop(links: _LoopLinks) -> None:
    """Close ``links`` when their loop shuts down: an async generator started here is
    registered with the running loop, which closes it in ``shutdown_asyncgens`` (before
    ``asyncio.run`` closes the loop), running its ``finally``. Without this, the sockets
    would outlive the loop (a ResourceWarning at exit)."""

    async def holder() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            _holders.discard(generator)
            links.close()

    generator = holder()
    _holders.add(generator)  # the loop only keeps a weak reference
    first = generator.asend(None)  # registers it with the running loop (firstiter hook)
    with contextlib.suppress(StopIteration):
        first.send(None)  # runs it to its yield, synchronously: it awaits nothing first


_holders: set[AsyncGenerator[None, None]] = set()
