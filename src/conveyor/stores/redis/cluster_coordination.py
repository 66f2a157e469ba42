"""Coordination on a Redis Cluster: the single-server coordinator, its keys in one slot.

Every coordination key is named under ``<p>:{<p>}`` (:func:`coordination_prefix`), so
the lease, unique, rate and slot scripts each touch one slot, as they must. That puts
coordination on one shard: it is small (leases, limits, revocations, the worker
registry, dead letters) and its traffic is a few commands per task at most, against the
queues' which spread across every shard.

It works as a coordinator apart from its transport does, since the queues' keys are in
other slots: a unique send claims its key, then publishes; a concurrency slot's holder
lives while its consumer's lease in ``<p>:{<p>}:consumers`` does (stamped by the
cluster consumers as they fetch and by the keeper's renewals). Beside a cluster
transport it also drops, when the slots are full, holders whose delivery is no longer
in flight (read from the queue's slot), so a lost release never leaks a slot there
either.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from redis.cluster import RedisCluster

from .connection import RedisLink, ssl_options
from .connection import text as _text
from .coordination import RedisCoordinator
from .keys import RedisKeys, coordination_prefix
from .slots import ClusterRouter, SlotLink, cluster_client
from .topology import RedisOptions

if TYPE_CHECKING:
    from .cluster import RedisClusterTransport

__all__ = ["RedisClusterCoordinator"]


class RedisClusterCoordinator(RedisCoordinator):
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        client: RedisCluster,
        router: ClusterRouter,
        failover_timeout: float,
        beside: RedisClusterTransport | None = None,
    ) -> None:
        # Not RedisCoordinator.__init__: there is no single connection pool here.
        self.url = url
        self.keys = RedisKeys(coordination_prefix(key_prefix))
        self.client = client  # type: ignore[assignment]  # same commands, routed by slot
        self._router = router
        self._owns_pool = False
        self._transport = None  # apart: see the module docstring
        self._local = threading.local()
        self._announced: set[str] = set()
        self._failover_timeout = failover_timeout
        self._owns_client = False
        self._beside = beside

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "conveyor",
        transport_options: Any = None,
        use_ssl: Any = None,
    ) -> RedisClusterCoordinator:
        """A coordinator on a cluster of its own (``coordinator_url``)."""
        tls = ssl_options(use_ssl, "coordinator_use_ssl")
        options = RedisOptions.read(url, transport_options)
        client = cluster_client(url, options, tls)
        router = ClusterRouter(client, url, tls)
        coordinator = cls(
            url, key_prefix=key_prefix, client=client, router=router,
            failover_timeout=options.failover_timeout,
        )  # fmt: skip
        coordinator._owns_client = True
        return coordinator

    def _link(self) -> RedisLink:
        # One raw link per thread and process, to the node serving the coordination slot.
        link: RedisLink | None = getattr(self._local, "link", None)
        if link is None or self._local.pid != os.getpid():
            link = SlotLink(self._router, self.keys.schedule_state, (), self._failover_timeout)
            self._local.link = link
            self._local.pid = os.getpid()
        return link

    def acquire_slot(self, key: str, limit: int, consumer_id: str, tag: str) -> bool:
        if super().acquire_slot(key, limit, consumer_id, tag):
            return True
        if self._beside is None or not self._drop_finished_holders(key):
            return False
        return super().acquire_slot(key, limit, consumer_id, tag)

    def _drop_finished_holders(self, key: str) -> bool:
        """Drop holders whose delivery left its in-flight hash (acked, released, requeued)
        without their release arriving. Safe outside a script: a tag is never leased
        again once it left, so "not in flight" stays true."""
        assert self._beside is not None
        dropped = False
        for raw in self.client.smembers(self.keys.slots(key)):
            consumer_id, _, tag = _text(raw).partition("\n")
            if tag and not self._beside.holds(consumer_id, tag):
                dropped |= bool(self.client.srem(self.keys.slots(key), raw))
        return dropped

    def close(self) -> None:
        link: RedisLink | None = getattr(self._local, "link", None)
        if link is not None and self._local.pid == os.getpid():
            link.close()
        if self._owns_client:
            self._router.close()
