"""The event stream (stores/eventlog.py) on every store: ordered, resumable, bounded."""

from __future__ import annotations

from conveyor.stores.eventlog import event_log_for

from .conftest import MakeTransport


def test_events_are_read_in_order_from_where_a_reader_stopped(
    make_transport: MakeTransport,
) -> None:
    writer, reader = event_log_for(make_transport()), event_log_for(make_transport())
    writer.append([b"1", b"2", b"3"], max_len=100)
    first = reader.read(None, 2)
    assert [body for _, body in first] == [b"1", b"2"]
    rest = reader.read(first[-1][0], 10)
    assert [body for _, body in rest] == [b"3"]
    assert reader.read(rest[-1][0], 10) == []
    writer.append([b"4"], max_len=100)
    assert [body for _, body in reader.read(rest[-1][0], 10)] == [b"4"]


def test_the_stream_is_bounded(make_transport: MakeTransport) -> None:
    log = event_log_for(make_transport())
    for start in range(0, 3000, 100):
        log.append([str(i).encode() for i in range(start, start + 100)], max_len=500)
    kept = log.read(None, 10_000)
    # Redis trims approximately (MAXLEN ~), SQLite every few hundred appends: about
    # max_len are kept, the newest always.
    assert 500 <= len(kept) < 1500
    assert kept[-1][1] == b"2999"


def test_a_saved_position_is_not_ahead_of_a_lost_streams_new_events(redis_url: str) -> None:
    # Redis restarted without persistence (here: the stream key deleted): a reader's
    # saved position must not hide the events written after.
    from conveyor.stores import transport_from_url
    from conveyor.stores.redis.transport import RedisTransport

    transport = transport_from_url(redis_url)
    assert isinstance(transport, RedisTransport)
    try:
        log = event_log_for(transport)
        log.append([b"before"], max_len=100)
        position = log.read(None, 10)[-1][0]
        transport.client.delete(transport.keys.events)
        log.append([b"after"], max_len=100)
        assert [body for _, body in log.read(position, 10)] == [b"after"]
    finally:
        transport.close()
