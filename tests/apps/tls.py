"""A test app that reaches Redis over TLS with a client certificate, as an ACL user.

    TEST_TLS_DIR         ca.pem, client.pem and client.key (the test makes them)
    TEST_BACKEND_URL     result_backend (its TLS set by redis_backend_use_ssl)

The broker URL comes from CONVEYOR_BROKER_URL; broker_use_ssl holds the TLS options,
as in Celery.
"""

from __future__ import annotations

import os
import ssl

from conveyor import Conveyor

app = Conveyor("tests.apps.tls")

_tls = os.environ.get("TEST_TLS_DIR")
if _tls:
    _options = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": f"{_tls}/ca.pem",
        "ssl_certfile": f"{_tls}/client.pem",
        "ssl_keyfile": f"{_tls}/client.key",
    }
    app.conf.update(
        broker_use_ssl=_options,
        result_backend=os.environ["TEST_BACKEND_URL"],
        redis_backend_use_ssl={**_options, "ssl_cert_reqs": "required"},
    )


@app.task
def add(x: int, y: int) -> int:
    return x + y
