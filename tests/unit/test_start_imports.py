"""What ``import conveyor`` and a worker's start path import (issue 17: start to first task).

Every module a worker imports is paid on every start, before its first task. These tests
guard the lazy imports by name, in a fresh interpreter (``sys.modules``), never by time:
a client or a worker on SQLite imports no redis-py (whose own import pulls in
``redis.asyncio`` and, when the SDK is installed, OpenTelemetry's), and no worker imports
the dashboard's web stack, rich, Prometheus, the asyncio or green pools, or tracing,
unless it is configured to use them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# Never imported by a prefork worker that did not ask for them.
NOT_FOR_A_WORKER = (
    "starlette",
    "uvicorn",
    "jinja2",
    "rich",
    "prometheus_client",
    "croniter",
    "gevent",
    "eventlet",
    "conveyor.dashboard",
    "conveyor.observe.tracing",
    "conveyor.worker.asyncpool",
    "conveyor.worker.eventloop",
    "conveyor.worker.green",
    "conveyor.cli.demo",
)
# redis-py, and what redis-py itself imports: only for a Redis store.
REDIS = ("redis", "redis.asyncio", "opentelemetry", "conveyor.stores.redis")


def _imported(code: str, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        print(json.dumps(sorted(sys.modules)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return set(modules)


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(
        m for m in modules if any(m == name or m.startswith(name + ".") for name in names)
    )


def test_import_conveyor_imports_no_store_client_nor_web_stack(tmp_path: Path) -> None:
    modules = _imported("import conveyor", tmp_path)
    assert _loaded(modules, NOT_FOR_A_WORKER + REDIS + ("click",)) == []


def test_a_prefork_worker_on_sqlite_starts_without_redis_py(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    modules = _imported(
        f"""
        from conveyor import Conveyor
        import click
        from conveyor.cli.main import cli
        from conveyor.worker.main import Worker

        cli.get_command(click.Context(cli), "worker")  # what `conveyor worker` loads
        app = Conveyor("light", broker={url!r}, backend={url!r})
        worker = Worker(app, pool="prefork", concurrency=2)
        worker._check_transport()
        _ = app.coordinator, app.backend, worker.observer
        import conveyor.worker.loop, conveyor.worker.keeper  # what a child runs
        """,
        tmp_path,
    )
    assert "conveyor.worker.supervisor" in modules
    assert _loaded(modules, NOT_FOR_A_WORKER + REDIS) == []


def test_a_prefork_worker_on_redis_imports_only_what_redis_py_needs(tmp_path: Path) -> None:
    # Nothing listens on port 1: building the stores does not connect.
    url = "redis://127.0.0.1:1/0"
    modules = _imported(
        f"""
        from conveyor import Conveyor
        import click
        from conveyor.cli.main import cli
        from conveyor.worker.main import Worker

        cli.get_command(click.Context(cli), "worker")
        app = Conveyor("light", broker={url!r}, backend={url!r})
        worker = Worker(app, pool="prefork", concurrency=2)
        worker._check_transport()
        _ = app.backend, worker.observer
        """,
        tmp_path,
    )
    assert "conveyor.stores.redis.transport" in modules
    # redis-py's own __init__ imports redis.asyncio, and its observability module the
    # OpenTelemetry SDK when that is installed: not ours to skip (docs/benchmarks.md).
    assert _loaded(modules, NOT_FOR_A_WORKER) == []
