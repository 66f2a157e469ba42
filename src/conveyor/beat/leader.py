"""Beat's leader lease: any number of beat processes may run; one fires each tick.

The lease is a record in the broker (Redis: a key set with NX and PX, renewed by a
compare-and-set script; SQLite: a row with its owner and expiry). The leader renews it
every third of its length; the others try to take it every second, so when the leader
dies another one leads within one lease (``beat_lease_seconds``, 10 s) and a second.
A leader that stops cleanly drops the lease, so the next one takes over at once.

A leader only fires while its own clock says the lease it last renewed is still valid.
Should a paused leader fire late anyway, the tick's message has a deterministic id and
an idempotency key, so the broker drops the duplicate (celery#2856, #4808: two Celery
beats send every task twice).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..exceptions import BrokerUnavailable

if TYPE_CHECKING:
    from ..stores.coordination import Leases

__all__ = ["LeaderLease", "default_owner"]

logger = logging.getLogger("conveyor.beat")

# The broker is unreachable for now: not leading, try again later.
TRANSIENT = (BrokerUnavailable,)


def default_owner() -> str:
    """``host:pid:random``: unique per process start, and readable in ``status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaderLease:
    def __init__(
        self,
        leases: Leases,
        name: str,
        owner: str,
        ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.name = name
        self.owner = owner
        self.ttl = float(ttl)
        self.monotonic = monotonic
        self._renewed = 0.0
        self._valid_until = 0.0
        self._leading = False

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    @property
    def retry_every(self) -> float:
        """How often a follower tries to take the lease."""
        return min(1.0, self.ttl / 4)

    def hold(self) -> bool:
        """True while this process leads: renews the lease when a third of it has gone,
        or tries to take it."""
        now = self.monotonic()
        if now < self._valid_until and now - self._renewed < self.renew_every:
            return True
        try:
            held = self.leases.hold_lease(self.name, self.owner, self.ttl)
        except TRANSIENT as exc:
            logger.warning("beat: cannot reach the broker to hold the lease (%s)", exc)
            held = False
        if held:
            # Counted from before the call: the broker's expiry is at least this late.
            self._renewed = now
            self._valid_until = now + self.ttl
        else:
            self._valid_until = 0.0
        if held != self._leading:
            self._leading = held
            if held:
                logger.info("beat: %s leads (lease %ss)", self.owner, f"{self.ttl:g}")
            else:
                logger.info("beat: %s does not lead; another beat fires the ticks", self.owner)
        return held

    def wait_hint(self) -> float:
        """How long the caller may sleep before it must call :meth:`hold` again."""
        if not self._leading:
            return self.retry_every
        return max(0.0, self._renewed + self.renew_every - self.monotonic())

    def release(self) -> None:
        """Drop the lease when leading (clean shutdown), so another beat takes over now."""
        if not self._leading:
            return
        self._leading = False
        self._valid_until = 0.0
        try:
            self.leases.drop_lease(self.name, self.owner)
        except TRANSIENT as exc:  # it expires by itself
            logger.debug("beat: could not drop the lease (%s)", exc)
