"""A/B of the AMQP consumer's read-ahead (``READ_AHEAD`` in stores/rabbitmq/channel.py).

``python amqp_read_ahead.py [--rounds 6] [--messages 4000]`` (from ``bench/``) starts a
private RabbitMQ node, and per round publishes ``--messages`` 300-byte messages and
drains them with one :class:`AmqpConsumer` (fetch 16, ack each), once with py-amqp's
own exact-size reads (``READ_AHEAD = 0``) and once reading ahead, alternated. Prints
the messages/s of each round (docs/benchmarks.md, RabbitMQ).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def drain_rate(url: str, read_ahead: int, messages: int) -> float:
    import conveyor.stores.rabbitmq.channel as channel
    from conveyor.stores.rabbitmq.transport import AmqpTransport

    channel.READ_AHEAD = read_ahead
    transport = AmqpTransport(url)
    for _ in range(0, messages, 500):
        transport.publish("read-ahead", [b"x" * 300] * 500)
    consumer = transport.consumer(["read-ahead"], f"ab-{read_ahead}-{time.time()}", 30)
    got = 0
    started = time.perf_counter()
    while got < messages:
        for delivery in consumer.fetch(16, 1.0):
            consumer.ack(delivery)
            got += 1
    seconds = time.perf_counter() - started
    consumer.close()
    transport.close()
    return messages / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=4000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.support_rabbitmq import RabbitNode

    with tempfile.TemporaryDirectory(prefix="read-ahead-") as directory:
        node = RabbitNode(Path(directory))
        node.start()
        try:
            url = node.vhost_url()
            rates: dict[int, list[float]] = {0: [], 4096: []}
            for _ in range(args.rounds):
                for read_ahead in rates:
                    rates[read_ahead].append(drain_rate(url, read_ahead, args.messages))
            for read_ahead, runs in rates.items():
                shown = ", ".join(f"{r:,.0f}" for r in runs)
                print(f"READ_AHEAD={read_ahead}: {shown} (median {statistics.median(runs):,.0f})")
        finally:
            node.close()


if __name__ == "__main__":
    main()
