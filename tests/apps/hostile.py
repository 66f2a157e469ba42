"""A test app for hostile input, its settings from environment variables so each worker
a test starts can have its own:

    TEST_ACCEPT             accept_content (comma separated)
    TEST_MAX_DELIVERIES     task_max_deliveries
    TEST_MAX_MESSAGE_SIZE   broker_max_message_size (bytes)
    TEST_LEASE_SECONDS      worker_lease_seconds

The broker comes from CONVEYOR_BROKER_URL, as in tests/apps/basic.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from conveyor import Conveyor

app = Conveyor("tests.apps.hostile")

_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "accept_content": ("TEST_ACCEPT", lambda value: value.split(",")),
    "task_max_deliveries": ("TEST_MAX_DELIVERIES", int),
    "broker_max_message_size": ("TEST_MAX_MESSAGE_SIZE", int),
    "worker_lease_seconds": ("TEST_LEASE_SECONDS", float),
}
for _name, (_variable, _kind) in _SETTINGS.items():
    if _variable in os.environ:
        app.conf[_name] = _kind(os.environ[_variable])


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def echo(value: Any) -> Any:
    return value
