"""AMQP URLs read as Celery/kombu read them, and the delay-level arithmetic."""

from __future__ import annotations

import pytest

from conveyor.exceptions import ConfigurationError
from conveyor.stores.rabbitmq.connection import parse_amqp_url
from conveyor.stores.rabbitmq.topology import (
    DELIVER,
    MAX_DELAY_MS,
    after_header,
    amqp_priority,
    conveyor_priority,
    delay_path,
    delay_queue,
)


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://guest:guest@localhost:5672//", "/"),
        ("amqp://guest:guest@localhost:5672/", "/"),
        ("amqp://localhost", "/"),
        ("amqp://u:p@h/prod", "prod"),
        ("amqp://u:p@h/%2Fprod", "/prod"),
        ("pyamqp://u:p@h:5673/a%20b", "a b"),
    ],
)
def test_vhost_is_read_like_kombu(url: str, vhost: str) -> None:
    assert parse_amqp_url(url).virtual_host == vhost


def test_user_password_host_port_and_defaults() -> None:
    settings = parse_amqp_url("amqp://bob:s%40cret@rabbit.local:5673/v")
    assert (settings.userid, settings.password) == ("bob", "s@cret")
    assert (settings.host, settings.port, settings.tls) == ("rabbit.local", 5673, False)
    bare = parse_amqp_url("amqp://rabbit.local")
    assert (bare.userid, bare.password, bare.port) == ("guest", "guest", 5672)


def test_amqps_means_tls_on_5671() -> None:
    settings = parse_amqp_url("amqps://u:p@h/v")
    assert settings.tls is True and settings.port == 5671


def test_settings_and_url_options() -> None:
    settings = parse_amqp_url("amqp://h//", heartbeat=30, retry_on_startup=False)
    assert settings.heartbeat == 30 and settings.retry_on_startup is False
    assert parse_amqp_url("amqp://h//?heartbeat=5").heartbeat == 5


def test_unknown_options_and_schemes_are_errors_naming_them() -> None:
    with pytest.raises(ConfigurationError, match="heartbaet"):
        parse_amqp_url("amqp://h//?heartbaet=5")
    with pytest.raises(ConfigurationError, match="not an AMQP URL"):
        parse_amqp_url("redis://h/0")
    with pytest.raises(ConfigurationError, match="several hosts"):
        parse_amqp_url("amqp://a;amqp://b")


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_amqp_url("amqp://u:topsecret@h//?bogus=1")
    assert "topsecret" not in str(caught.value)


def test_priority_zero_is_amqp_nine() -> None:
    assert [amqp_priority(p) for p in (0, 5, 9)] == [9, 4, 0]
    assert [conveyor_priority(amqp_priority(p)) for p in range(10)] == list(range(10))
    assert conveyor_priority(None) == 0


@pytest.mark.parametrize("delay_ms", [1, 2, 3, 500, 1000, 86_400_000, MAX_DELAY_MS])
def test_delay_path_visits_each_set_bit_once_and_sums_to_the_delay(delay_ms: int) -> None:
    first, headers = delay_path(delay_ms)
    visited: list[int] = []
    level: str = first.rsplit(".", 1)[1]
    while level != DELIVER:
        visited.append(int(level))
        level = headers[after_header(int(level))]
    assert first == delay_queue(visited[0])
    assert visited == sorted(visited, reverse=True)
    assert sum(2**k for k in visited) == delay_ms
    assert len(headers) == len(visited)


def test_delays_past_the_levels_take_the_longest_path() -> None:
    assert delay_path(MAX_DELAY_MS * 3) == delay_path(MAX_DELAY_MS)
