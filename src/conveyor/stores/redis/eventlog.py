"""The event stream on Redis: one capped stream, ``<p>:events`` (XADD MAXLEN ~)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..eventlog import EventLog
from .connection import text

if TYPE_CHECKING:
    from .coordination import RedisCoordinator
    from .transport import RedisTransport

__all__ = ["RedisEventLog"]


class RedisEventLog(EventLog):
    def __init__(self, transport: RedisTransport | RedisCoordinator) -> None:
        self.client = transport.client
        self.key = transport.keys.events

    def append(self, records: Sequence[bytes], max_len: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for record in records:
            pipe.xadd(self.key, {"e": record}, maxlen=max_len, approximate=True)
        pipe.execute()

    def read(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        start = f"({after}" if after else "-"
        entries: Any = self.client.xrange(self.key, min=start, max="+", count=limit)
        return [(text(entry_id), bytes(fields[b"e"])) for entry_id, fields in entries]
