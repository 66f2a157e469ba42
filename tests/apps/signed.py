"""A test app that runs only signed messages. Its key, certificate and certificate store
are in the directory named by CONVEYOR_TEST_SECURITY (the test makes them)."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor import Conveyor

app = Conveyor("tests.apps.signed")

_security = os.environ.get("CONVEYOR_TEST_SECURITY")
if _security:
    app.conf.update(
        security_key=f"{_security}/worker.key",
        security_certificate=f"{_security}/worker.pem",
        security_cert_store=f"{_security}/store/*.pem",
        security_digest="sha256",
        task_serializer="auth",
        accept_content=["auth"],
    )
    app.setup_security()


@app.task
def touch(path: str) -> str:
    """Leave a trace that the task ran."""
    Path(path).touch()
    return path
