"""The Redis consumer's idle wait: it blocks on the queue's wake key with its next fetch
already sent behind the block (one write), so a woken consumer's messages come back in
the same reply. These tests cover what that pipelining must not break."""

from __future__ import annotations

import threading
import time

import redis

from conveyor.stores import transport_from_url


def test_a_woken_consumer_gets_the_message_in_one_wait(redis_url: str) -> None:
    consumer = transport_from_url(redis_url).consumer(["q"], "c1", 30.0)
    publisher = transport_from_url(redis_url)
    timer = threading.Timer(0.2, lambda: publisher.publish("q", [b"hello"]))
    timer.start()
    got = consumer.fetch(1, 5.0)
    timer.join()
    assert [d.body for d in got] == [b"hello"]
    # Leased to this consumer, as any fetch leases: in its in-flight hash until acked.
    client = redis.Redis.from_url(redis_url)
    assert client.hlen("conveyor:inflight:c1") == 1
    consumer.ack(got[0])
    consumer.flush()
    assert client.hlen("conveyor:inflight:c1") == 0


def test_scripts_flushed_while_a_consumer_waits(redis_url: str) -> None:
    """The fetch queued behind the block meets NOSCRIPT after a SCRIPT FLUSH; the
    consumer loads the script again and still gets the message."""
    consumer = transport_from_url(redis_url).consumer(["q"], "c1", 30.0)
    publisher = transport_from_url(redis_url)
    client = redis.Redis.from_url(redis_url)

    def flush_then_publish() -> None:
        client.script_flush()
        publisher.publish("q", [b"after flush"])

    timer = threading.Timer(0.2, flush_then_publish)
    timer.start()
    started = time.monotonic()
    got = consumer.fetch(1, 5.0)
    timer.join()
    assert [d.body for d in got] == [b"after flush"]
    assert time.monotonic() - started < 2.0


def test_a_wait_that_times_out_returns_nothing_and_leases_nothing(redis_url: str) -> None:
    consumer = transport_from_url(redis_url).consumer(["q"], "c1", 30.0)
    assert consumer.fetch(5, 0.3) == []
    # The fetch that ran after the timed-out block found nothing; the next publish is
    # fetched by the next call, not lost in a reply nobody read.
    transport_from_url(redis_url).publish("q", [b"later"])
    assert [d.body for d in consumer.fetch(5, 1.0)] == [b"later"]


def test_a_batch_takes_from_every_queue_before_filling_from_one(redis_url: str) -> None:
    """A backlog on one queue never fills a whole batch while another queue's message
    waits: that message waits for at most one batch of one consumer."""
    publisher = transport_from_url(redis_url)
    publisher.publish("bulk", [b"b%d" % i for i in range(100)])
    publisher.publish("urgent", [b"u"])
    consumer = transport_from_url(redis_url).consumer(["bulk", "urgent"], "c1", 30.0)
    got = consumer.fetch(16, 1.0)
    assert len(got) == 16
    assert [d.queue for d in got].count("urgent") == 1
    assert got[0].body == b"b0" and got[1].body == b"u"  # one from each, in turn
    assert [d.body for d in got[2:]] == [b"b%d" % i for i in range(1, 15)]  # FIFO kept


def test_the_first_pass_keeps_each_queues_priority_order(redis_url: str) -> None:
    publisher = transport_from_url(redis_url)
    publisher.publish("a", [b"a-low"], priority=9)
    publisher.publish("a", [b"a-high"], priority=0)
    publisher.publish("b", [b"b-low"], priority=9)
    publisher.publish("b", [b"b-high"], priority=0)
    consumer = transport_from_url(redis_url).consumer(["a", "b"], "c1", 30.0)
    got = [d.body for d in consumer.fetch(4, 1.0)]
    assert got == [b"a-high", b"b-high", b"a-low", b"b-low"]
