"""The control mailbox: how ``inspect`` and ``control`` commands reach running workers.

A coordination piece beside the transport: a client posts a command into the inbox of
each live worker it addresses and waits, up to its timeout, for their answers under a
reply id. Inboxes and replies expire, so a dead worker's inbox never grows and a late
answer nobody waits for disappears. The worker side is ``observe/responder.py``; in a
prefork worker the supervisor (which runs no task) answers, so a worker whose children
are all busy with CPU-bound tasks still answers at once.

Celery broadcasts over a fanout exchange and every worker's consumer must be free to
read it (celery#3283: ``inspect`` times out on busy workers); a per-worker inbox read by
the supervisor does not depend on a free child.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from .urls import masked

if TYPE_CHECKING:
    from .coordination import Coordinator
    from .transport import Transport

__all__ = ["Mailbox", "MailboxStore", "mailbox_for"]


class Mailbox(ABC):
    """Inboxes per worker name and reply lists per reply id, both expiring."""

    @abstractmethod
    def post(self, workers: Sequence[str], command: bytes, ttl: float) -> None:
        """Put ``command`` into each worker's inbox; the inbox expires ``ttl`` seconds
        after its last command."""

    @abstractmethod
    def take(self, worker: str, limit: int = 16) -> list[bytes]:
        """Take up to ``limit`` commands from ``worker``'s inbox, oldest first; never
        blocks (the supervisor calls it between its other chores)."""

    @abstractmethod
    def answer(self, reply_id: str, reply: bytes, ttl: float) -> None:
        """Add ``reply`` to the answers of ``reply_id`` (they expire after ``ttl``)."""

    @abstractmethod
    def collect(self, reply_id: str, expected: int, timeout: float) -> list[bytes]:
        """Wait up to ``timeout`` seconds for ``expected`` answers; return those that
        came (fewer when some worker did not answer in time)."""

    @abstractmethod
    def held(self, consumer_id: str) -> list[tuple[str, bytes]]:
        """The (tag, body) of every message ``consumer_id`` holds leased now (a prefork
        child's prefetched messages, for ``inspect reserved``)."""


class MailboxStore(ABC):
    """The capability of a store that holds control mailboxes (redis, sqlite, memory, and
    the redis and sqlite coordinators). A transport that has it keeps the mailbox beside
    its messages; one that has not (amqp) pairs with a coordinator that has it. A new
    store plugs in by offering it: nothing here names a store."""

    @abstractmethod
    def control_mailbox(self) -> Mailbox:
        """A new mailbox on this store (:func:`mailbox_for` keeps one per broker)."""


_MAILBOXES: weakref.WeakKeyDictionary[Transport, Mailbox] = weakref.WeakKeyDictionary()


def mailbox_for(broker: Transport, coordinator: Coordinator | None = None) -> Mailbox:
    """The mailbox that lives in the same store as ``broker`` (one per broker object),
    or, for a broker that only moves messages (amqp://), in ``coordinator``'s store."""
    mailbox = _MAILBOXES.get(broker)
    if mailbox is None:
        mailbox = _MAILBOXES[broker] = _make(broker, coordinator)
    return mailbox


def _make(broker: Transport, coordinator: Coordinator | None) -> Mailbox:
    for store in (broker, coordinator):
        if isinstance(store, MailboxStore):
            return store.control_mailbox()
    raise ConfigurationError(
        f"the broker {masked(broker.url)!r} has no control mailbox, nor has its "
        f"coordinator ({type(coordinator).__name__}): inspect and control need one "
        "(set coordinator_url to a redis:// or sqlite:// store)"
    )
