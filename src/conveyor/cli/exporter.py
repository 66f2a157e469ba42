"""``conveyor exporter``: a standalone Prometheus endpoint for the broker's side."""

from __future__ import annotations

import click

from .main import AppContext


@click.command()
@click.option("--port", type=click.IntRange(min=1, max=65535), default=9808, show_default=True)
@click.option("--host", default="", help="Address to listen on. [default: all]")
@click.pass_obj
def exporter(obj: AppContext, port: int, host: str) -> None:
    """Serve Prometheus metrics read from the broker at each scrape: queue depth,
    scheduled messages, age of the oldest waiting message, live workers. Task counts
    and times come from each worker's own endpoint (worker --metrics-port)."""
    from ..observe.metrics import bind_server

    server = bind_server(obj.app, port, None, host=host)
    click.echo(f"Serving metrics on http://{host or '0.0.0.0'}:{port}/metrics", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
