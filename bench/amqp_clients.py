"""Which AMQP client should the RabbitMQ transport use? Measured, not guessed.

For py-amqp (``amqp``, kombu's client) and pika (``BlockingConnection``), on one node:

  confirm-1    persistent publishes, each waiting for its publisher confirm (.delay())
  confirm-N    persistent publishes in batches of 100, the confirms awaited per batch
  consume+ack  basic.consume with prefetch 100, each message acked on its own

Run: ``python bench/amqp_clients.py amqp://guest:guest@127.0.0.1:PORT// [N]``
(against a node of your own; tests/support_rabbitmq.py starts one). aio-pika/aiormq
were left out: the worker's consuming loop is synchronous (one per child process), and
driving an event loop per call costs more than either synchronous client.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import amqp
import pika

BODY = b'{"task":"bench.incr","args":[1],"kwargs":{}}' * 4
BATCH = 100


def rate(label: str, count: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    per_second = count / (time.perf_counter() - started)
    print(f"{label:<28} {per_second:>10,.0f} msg/s")
    return per_second


def py_amqp(url: str, count: int) -> None:
    parts = urlsplit(url)
    connection = amqp.Connection(
        f"{parts.hostname}:{parts.port}", userid=parts.username, password=parts.password
    )
    connection.connect()
    channel = connection.channel()
    channel.queue_delete("bench-pyamqp")
    channel.queue_declare("bench-pyamqp", durable=True, auto_delete=False)
    channel.confirm_select()
    message = amqp.Message(BODY, delivery_mode=2)

    def one_by_one() -> None:
        for _ in range(count):
            channel.basic_publish_confirm(message, "", "bench-pyamqp")

    acked = [0]
    channel.events["basic_ack"].add(lambda tag, multiple: acked.__setitem__(0, tag))

    def batched() -> None:
        sent = 0
        while sent < count:
            for _ in range(BATCH):
                channel.basic_publish(message, "", "bench-pyamqp")
            sent += BATCH
            target = count + sent  # confirm tags count on from the one-by-one run
            while acked[0] < target:
                connection.drain_events(timeout=5)

    rate("py-amqp confirm-1", count, one_by_one)
    rate("py-amqp confirm-N", count, batched)
    consume(
        "py-amqp consume+ack", count * 2,
        lambda done: _py_amqp_consume(connection, channel, count * 2, done),
    )
    connection.close()


def _py_amqp_consume(
    connection: amqp.Connection, channel: amqp.Channel, count: int, done: list[int]
) -> None:
    channel.basic_qos(0, 100, False)

    def on_message(message: amqp.Message) -> None:
        channel.basic_ack(message.delivery_tag)
        done[0] += 1

    channel.basic_consume("bench-pyamqp", callback=on_message)
    while done[0] < count:
        connection.drain_events(timeout=5)


def consume(label: str, count: int, run: Callable[[list[int]], None]) -> None:
    done = [0]
    rate(label, count, lambda: run(done))


def pika_blocking(url: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url.rstrip("/") + "/%2F"))
    channel = connection.channel()
    channel.queue_delete("bench-pika")
    channel.queue_declare("bench-pika", durable=True)
    channel.confirm_delivery()
    properties = pika.BasicProperties(delivery_mode=2)

    def one_by_one() -> None:
        for _ in range(count):
            channel.basic_publish("", "bench-pika", BODY, properties)

    rate("pika confirm-1", count, one_by_one)
    # pika's BlockingChannel waits for every confirm inside basic_publish: it has no
    # way to pipeline a batch, so confirm-N is confirm-1 again.
    rate("pika confirm-N (=confirm-1)", count, one_by_one)
    channel.basic_qos(prefetch_count=100)
    total = count * 2
    done = [0]

    def run() -> None:
        for method, _, _ in channel.consume("bench-pika", inactivity_timeout=5):
            assert method is not None
            channel.basic_ack(method.delivery_tag)
            done[0] += 1
            if done[0] >= total:
                break
        channel.cancel()

    rate("pika consume+ack", total, run)
    connection.close()


def main() -> None:
    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    py_amqp(url, count)
    pika_blocking(url, count)


if __name__ == "__main__":
    main()
