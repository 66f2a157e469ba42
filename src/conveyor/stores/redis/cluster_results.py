"""The Redis result backend on a Redis Cluster.

A task's result list and interim state share the tag ``{t:<id>}``, so
``store_result.lua`` and ``BLMOVE key key`` (the pushed wait) each stay in one slot; a
chord's hash and done set share ``{c:<id>}``. A chord header's result and its count are
in two slots, so they are two steps: the result first (``store_result.lua``), then the
count (``chord_count.lua``); see the comment at the top of ``chord_count.lua`` for why a
crash between them loses nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..results import ChordBody, ResultsLink
from ..transport import ResultWrite
from .connection import load_script, ssl_options
from .keys import ClusterKeys
from .results import STORE, RedisBackend
from .slots import cluster_client
from .topology import RedisOptions

__all__ = ["RedisClusterBackend"]

logger = logging.getLogger("conveyor.backend")

CHORD_COUNT = load_script("conveyor.stores.redis", "chord_count")


class RedisClusterBackend(RedisBackend):
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "conveyor",
        expires: float = 86400.0,
        transport_options: Mapping[str, Any] | None = None,
        use_ssl: Any = None,
    ) -> None:
        # Not RedisBackend.__init__: a cluster client instead of one connection pool.
        self.url = url
        self.keys = ClusterKeys(key_prefix)
        self.location = f"{url} {key_prefix}"
        self.expires = expires
        self.ttl_ms = max(1, int(expires * 1000))
        options = RedisOptions.read(url, transport_options)
        tls = ssl_options(use_ssl, "redis_backend_use_ssl")
        self.client = cluster_client(url, options, tls)  # type: ignore[assignment]
        self._store = self.client.register_script(STORE.source)
        self._chord_count = self.client.register_script(CHORD_COUNT.source)

    @property
    def async_native(self) -> bool:
        return False  # no async cluster client: awaits go to the shared waiter thread

    def results_link(self) -> ResultsLink | None:
        return None  # a task's records live on the node of its slot, not on one link

    def chord_part(self, chord_id: str, write: ResultWrite) -> ChordBody | None:
        self.store(write.task_id, write.payload, final=True)
        reply = self._chord_count(
            keys=[self.keys.chord(chord_id), self.keys.chord_done(chord_id)],
            args=[self.ttl_ms, write.task_id],
        )
        if isinstance(reply, list):
            body, queue, priority = reply
            return ChordBody(bytes(body), queue.decode(), int(priority))
        if reply == -1:
            logger.warning("chord %s unknown (expired?): %s not counted", chord_id, write.task_id)
        return None

    def close(self) -> None:
        self.client.close()
