"""Worker and consumer names."""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["consumer_id", "expand_hostname"]


def expand_hostname(template: str | None) -> str:
    """Celery's ``-n`` expansion: %h host name, %n its first label, %d its domain."""
    host = socket.gethostname()
    name, _, domain = host.partition(".")
    if not template:
        template = "conveyor@%h"
    return template.replace("%h", host).replace("%n", name).replace("%d", domain).replace("%%", "%")


def consumer_id(hostname: str, label: str) -> str:
    """Unique per process start, so a restarted child never inherits a dead one's lease."""
    return f"{hostname}/{label}/{os.getpid()}-{uuid.uuid4().hex[:8]}"
