"""``run.py --rabbitmq``: a private RabbitMQ node (the test suite's, on free ports in a
temp dir), one vhost per framework, and a purge of their default queue between runs."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import amqp
import amqp.exceptions

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Brokers:
    env: dict[str, str] = field(default_factory=dict)
    purge: Callable[[], None] | None = None


@contextmanager
def rabbit_brokers(enabled: bool) -> Iterator[Brokers]:
    if not enabled:
        yield Brokers()
        return
    sys.path.insert(0, str(ROOT))
    from tests.support_rabbitmq import RabbitNode

    with tempfile.TemporaryDirectory(prefix="bench-rabbitmq-") as directory:
        node = RabbitNode(Path(directory))
        node.start()
        try:
            urls = {"celery": node.vhost_url(), "conveyor": node.vhost_url()}
            print(f"rabbitmq node {node.name} on port {node.port}", file=sys.stderr)
            yield Brokers(
                env={f"BENCH_BROKER_URL_{name.upper()}": url for name, url in urls.items()},
                purge=lambda: purge_default_queues(urls.values()),
            )
        finally:
            node.close()


def purge_default_queues(urls: object) -> None:
    """Empty the ``celery`` queue of each vhost (left over only by a failed run)."""
    for url in urls:  # type: ignore[attr-defined]
        parts = urlsplit(url)
        connection = amqp.Connection(
            f"{parts.hostname}:{parts.port}", userid="guest", password="guest",
            virtual_host=parts.path[1:] or "/",
        )
        connection.connect()
        channel = connection.channel()
        with suppress(amqp.exceptions.NotFound):  # not declared yet
            channel.queue_purge("celery")
        connection.close()
