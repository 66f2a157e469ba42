"""The process's copy of the broker's revocations, refreshed by the keeper."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..stores.coordination import RevocationLog

__all__ = ["RevocationCache"]


class RevocationCache:
    """Revoked task ids as last read from the broker. Reading is free (a frozenset
    lookup); refreshing asks the broker only for a version number unless it changed."""

    def __init__(self) -> None:
        self.version = 0
        self.revoked: frozenset[str] = frozenset()
        self.terminate: dict[str, str] = {}

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.revoked

    def refresh(self, log: RevocationLog) -> bool:
        """Re-read the revocations if they changed; True when they did."""
        fresh = log.revocations(self.version)
        if fresh is None:
            return False
        self.version = fresh.version
        self.revoked = fresh.revoked
        self.terminate = fresh.terminate
        return True
