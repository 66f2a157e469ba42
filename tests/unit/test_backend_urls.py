"""A result backend conveyor does not have is an error at the first send (and at worker
start), naming what is supported, not a surprise at the first ``.get()``."""

from __future__ import annotations

import pytest

from conveyor import Conveyor
from conveyor.exceptions import ConfigurationError


@pytest.mark.parametrize(
    "backend",
    [
        "rpc://",
        "db+postgresql://user:pw@db/results",
        "django-db",
        "cache+memcached://127.0.0.1:11211/",
        "mongodb://localhost:27017/",
        "s3://bucket",
    ],
)
def test_an_unsupported_backend_fails_at_the_first_send(backend: str) -> None:
    app = Conveyor("x", broker="memory://", backend=backend, set_as_current=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(ConfigurationError) as caught:
        add.delay(1, 2)
    message = str(caught.value)
    assert message.startswith("unsupported result backend")
    assert (
        "expected redis://, rediss://, unix://, sentinel://, redis+cluster://, "
        "sqlite:///path or memory://"
    ) in message
    assert "pw@" not in message  # passwords stay masked
    app.conf.result_backend = "memory://"
    assert add.delay(1, 2).id  # and it sends once the backend is one conveyor has
