"""Starting the dashboard: where its history file lives, the safe-binding rule, and
uvicorn. Used by ``conveyor dashboard``/``flower`` and ``conveyor demo --dashboard``."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from .security import Access, check_token, is_loopback

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..app import Conveyor
    from .app import Dashboard

__all__ = ["Background", "DashboardOptions", "build", "history_path", "serve", "serve_in_thread"]

CATCH_UP_SECONDS = 10.0


@dataclass
class DashboardOptions:
    port: int = 5555
    address: str = "127.0.0.1"
    url_prefix: str = ""
    users: dict[str, str] = field(default_factory=dict)
    read_only: bool = False
    read_only_users: frozenset[str] = frozenset()
    db: Path | None = None
    max_tasks: int | None = None
    token: str | None = None  # a bearer token (--token, dashboard_token)

    def check(self) -> None:
        """Without users or a token, only this machine may connect (and the CLI says so)."""
        if self.token is not None:
            try:
                check_token(self.token)
            except ValueError as exc:
                raise ConfigurationError(f"--token: {exc}") from None
        if not self.users and self.token is None and not is_loopback(self.address):
            raise ConfigurationError(
                f"without --basic-auth or --token the dashboard listens on 127.0.0.1 only "
                f"(asked for {self.address}): give --basic-auth user:password or --token "
                f"to open it up"
            )
        unknown = self.read_only_users - set(self.users)
        if unknown:
            raise ConfigurationError(
                f"--read-only-user {', '.join(sorted(unknown))}: not a --basic-auth user"
            )


def history_path(app: Conveyor) -> Path:
    """One history file per broker, beside the embedded broker's files."""
    from ..app import default_data_dir

    digest = hashlib.sha1(app.broker_url.encode()).hexdigest()[:12]
    return default_data_dir() / "dashboard" / f"history-{digest}.sqlite3"


def build(app: Conveyor, options: DashboardOptions) -> tuple[Dashboard, Starlette]:
    from .app import Dashboard, create_app
    from .history import History

    if options.token is None and app.conf.get("dashboard_token"):
        options.token = str(app.conf.get("dashboard_token"))
    options.check()
    max_tasks = options.max_tasks or int(app.conf.get("dashboard_max_tasks", 1_000_000))
    history = History(options.db or history_path(app), max_tasks)
    access = Access(options.users, options.read_only_users, options.read_only, options.token)
    board = Dashboard(app, history, access, options.url_prefix)
    board.follower.catch_up(CATCH_UP_SECONDS)
    return board, create_app(board)


def serve(app: Conveyor, options: DashboardOptions, say: Callable[[str], None] = print) -> None:
    """Run the dashboard in this process until interrupted."""
    import uvicorn

    board, web = build(app, options)
    where = f"http://{options.address}:{options.port}{board.prefix}/"
    if options.users or options.token:
        ways = [f"{len(options.users)} user(s), basic auth"] if options.users else []
        ways += ["a bearer token (or ?token= once in a browser)"] if options.token else []
        say(f"conveyor dashboard on {where} ({'; '.join(ways)})")
    else:
        say(f"conveyor dashboard on {where} (no --basic-auth: only this machine may connect)")
    uvicorn.run(
        web,
        host=options.address,
        port=options.port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


class Background:
    """A dashboard served from a thread of this process (``conveyor demo --dashboard``)."""

    def __init__(self, server: Any, thread: threading.Thread, url: str, board: Dashboard) -> None:
        self.server = server
        self.thread = thread
        self.url = url
        self.board = board

    def stop(self) -> None:
        """Stop serving, then let go of the history file (its lock lets the next
        dashboard on this broker open it)."""
        self.server.should_exit = True
        self.thread.join(5)
        self.board.history.close()


def serve_in_thread(app: Conveyor, options: DashboardOptions, timeout: float = 10.0) -> Background:
    """Start the dashboard on a thread and return once it listens (uvicorn installs no
    signal handlers off the main thread: Ctrl-C stays the caller's)."""
    import uvicorn

    board, web = build(app, options)
    config = uvicorn.Config(
        web,
        host=options.address,
        port=options.port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="conveyor-dashboard-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            board.history.close()
            raise ConfigurationError(
                f"the dashboard could not listen on {options.address}:{options.port} "
                "(is the port taken? choose another with --dashboard-port)"
            )
        time.sleep(0.02)
    url = f"http://{options.address}:{options.port}{board.prefix}/"
    return Background(server, thread, url, board)
