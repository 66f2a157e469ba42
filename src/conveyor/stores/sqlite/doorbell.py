"""Wake-ups between processes on one machine, for the SQLite broker and result backend.

SQLite has no server that could push a message to a blocked client, and polling the
file costs either latency (long sleeps) or CPU (short ones). So a waiter rings its own
doorbell: a Unix datagram socket bound to an address of its own (Linux's abstract
namespace, so no file is left behind; a socket file in the temp dir elsewhere). It
writes that address into the ``waiters`` table in the same transaction in which it
found nothing to take, then sleeps in ``select()`` on the socket. Whoever commits what
it waits for (a message on its queue, the final result of its task) deletes those rows
in that same transaction and, once committed, sends each address one byte.

No wake-up can be lost: the waiter's check and its registration are one transaction,
and so are the writer's change and its read of the registrations, so either the waiter
sees the change or the writer sees the waiter. A byte sent to a waiter that already
left is read later as a spurious wake-up, which only costs one more look. Waiters still
wake on a backstop timer, in case a writer died between its commit and its ring.

Where Unix datagram sockets do not exist (Windows), :class:`Doorbell` degrades to sleeps
that back off from 1 ms to 50 ms: correct, slower to react, and never a hot spin.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable

__all__ = ["Doorbell", "ring"]

# A waiter looks again after this long even if nobody rang (a writer may have died
# between its commit and its ring).
BACKSTOP = 0.5

_ABSTRACT = sys.platform.startswith("linux")
_HAS_UNIX_DGRAM = hasattr(socket, "AF_UNIX") and hasattr(socket, "SOCK_DGRAM")
_MIN_SLEEP = 0.001
_MAX_SLEEP = 0.05


def _socket_path(address: str) -> str:
    """The address stored in the database, as the socket API wants it ("@" = abstract)."""
    return "\0" + address[1:] if address.startswith("@") else address


class Doorbell:
    """One waiter's socket. Owned by one thread; ``address`` is None when polling."""

    def __init__(self) -> None:
        self.address: str | None = None
        self.pid = os.getpid()
        self._sock: socket.socket | None = None
        self._sleep = _MIN_SLEEP
        if not _HAS_UNIX_DGRAM:
            return
        name = f"conveyor-{os.getpid()}-{uuid.uuid4().hex[:16]}"
        if _ABSTRACT:
            address = "@" + name
        else:
            directory = os.path.join(tempfile.gettempdir(), f"conveyor-{os.getuid()}")
            os.makedirs(directory, mode=0o700, exist_ok=True)
            address = os.path.join(directory, name + ".sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(_socket_path(address))
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        self._sock = sock
        self.address = address

    def clear(self) -> None:
        """Forget rings that arrived before now (call before registering again)."""
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while sock.recv(64):
                pass

    def wait(self, timeout: float) -> bool:
        """Sleep until rung or ``timeout`` seconds pass; True when rung."""
        sock = self._sock
        if sock is None:
            # No sockets here: back off from 1 ms to 50 ms between looks.
            pause = min(self._sleep, max(timeout, 0.0))
            time.sleep(pause)
            self._sleep = min(self._sleep * 2, _MAX_SLEEP)
            return False
        if timeout > 0:
            readable, _, _ = select.select([sock], [], [], timeout)
            if not readable:
                return False
        try:
            sock.recv(64)
        except (BlockingIOError, InterruptedError):
            return False
        self.clear()
        return True

    def rung(self) -> None:
        """Reset the polling back-off after something was found."""
        self._sleep = _MIN_SLEEP

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        sock.close()
        address = self.address
        if address is not None and not address.startswith("@") and self.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(address)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class _Sender:
    """One unbound socket per process to ring from (sendto is thread-safe)."""

    sock: socket.socket | None = None
    pid = 0
    lock = threading.Lock()

    @classmethod
    def get(cls) -> socket.socket:
        sock = cls.sock
        if sock is not None and cls.pid == os.getpid():
            return sock
        with cls.lock:
            if cls.sock is None or cls.pid != os.getpid():
                if cls.sock is not None:
                    cls.sock.close()  # the parent's, inherited by this forked child
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                cls.sock, cls.pid = sock, os.getpid()
            return cls.sock


def ring(addresses: Iterable[str]) -> None:
    """Wake the waiters at ``addresses`` (their rows were deleted by the caller's
    transaction). Never blocks and never raises: a waiter that is gone is simply gone."""
    sock = _Sender.get()
    for address in addresses:
        # BlockingIOError: its buffer is full of rings already. Refused / not found:
        # the waiter died; its row is gone with this ring.
        with contextlib.suppress(OSError):
            sock.sendto(b"!", _socket_path(address))
