"""What a priority queue costs RabbitMQ per message, against a plain one (issue 15).

    .venv/bin/python bench/amqp_priority_cost.py [--messages 20000] [--rounds 2]

Starts a private RabbitMQ node (the test suite's: free ports, its own data dir),
publishes --messages persistent 300-byte messages with publisher confirms to a durable
queue declared with ``x-max-priority: 10`` (conveyor's queues, for priorities 0-9) and
to one without (Celery's default), then consumes and acks each with prefetch 16, and
prints the node's CPU time (the Erlang VM and its helpers, from psutil) per message
consumed and acked. Rounds alternate the two queues.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import amqp
import psutil

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.support_rabbitmq import RabbitNode

    with tempfile.TemporaryDirectory(prefix="bench-rabbit-") as directory:
        node = RabbitNode(Path(directory))
        node.start()
        try:
            assert node.process is not None
            root = psutil.Process(node.process.pid)
            procs = [root, *root.children(recursive=True)]

            def cpu() -> float:
                return sum(x.cpu_times().user + x.cpu_times().system for x in procs)

            url = urlsplit(node.vhost_url())
            kinds: list[tuple[str, dict[str, int]]] = [
                ("x-max-priority 10", {"x-max-priority": 10}),
                ("plain", {}),
            ]
            print("| queue | round | consume + ack (s) | RabbitMQ CPU per message (us) |")
            print("|---|---:|---:|---:|")
            for round_ in range(args.rounds):
                for name, arguments in kinds:
                    connection = amqp.Connection(
                        f"{url.hostname}:{url.port}",
                        userid="guest",
                        password="guest",
                        virtual_host=url.path[1:] or "/",
                    )
                    connection.connect()
                    channel = connection.channel()
                    queue = f"cost-{round_}-{len(arguments)}"
                    channel.queue_declare(
                        queue, durable=True, auto_delete=False, arguments=arguments
                    )
                    channel.confirm_select()
                    body = b"x" * 300
                    for _ in range(args.messages):
                        message = amqp.Message(body, delivery_mode=2, priority=0)
                        channel.basic_publish(message, routing_key=queue)
                    time.sleep(1)  # let the node settle after the publishes
                    before, started = cpu(), time.perf_counter()
                    channel.basic_qos(0, 16, False)
                    got = [0]

                    def on_message(
                        message: amqp.Message, channel: amqp.Channel = channel, got: list[int] = got
                    ) -> None:
                        got[0] += 1
                        channel.basic_ack(message.delivery_tag)

                    channel.basic_consume(queue, callback=on_message)
                    while got[0] < args.messages:
                        connection.drain_events(timeout=10)
                    took = time.perf_counter() - started
                    per = (cpu() - before) / args.messages * 1e6
                    print(f"| {name} | {round_ + 1} | {took:.2f} | {per:.1f} |")
                    connection.close()
        finally:
            node.close()


if __name__ == "__main__":
    main()
