"""The dashboard's web application (starlette): routes, templates, the live stream.

One :class:`Dashboard` holds what every page needs (the conveyor app, the history and
its follower, who may act); :func:`create_app` wires the pages (pages.py) and actions
(actions.py) under the URL prefix. Pages are rendered on the server (Jinja2); a page
marked live re-renders in place when the server-sent stream at ``/live`` says the
history moved (static/dashboard.js).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import present
from .follower import Follower
from .history import History
from .present import Masking
from .security import Access, AuthMiddleware, csrf_token, remember_csrf

if TYPE_CHECKING:
    from ..app import Conveyor

__all__ = ["Dashboard", "create_app"]

HERE = Path(__file__).parent
LIVE_POLL_SECONDS = 0.25
LIVE_KEEPALIVE_SECONDS = 15.0


@dataclass
class Dashboard:
    app: Conveyor
    history: History
    access: Access = field(default_factory=Access)
    prefix: str = ""
    follower: Follower = field(init=False)
    masking: Masking = field(init=False)
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        self.prefix = self.prefix.rstrip("/")
        if self.prefix and not self.prefix.startswith("/"):
            self.prefix = "/" + self.prefix
        self.follower = Follower(self.app, self.history)
        self.masking = Masking(self.app.conf.get("dashboard_mask_args", False))
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(
            ago=present.ago,
            clock=present.clock,
            duration=present.duration,
            short=present.short,
            uptime=present.uptime,
        )
        env.globals.update(base=self.prefix)

    def render(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        context = {
            "may_act": bool(getattr(request.state, "may_act", False)),
            "user": getattr(request.state, "user", None),
            "csrf": csrf_token(request),
            "store_error": self.follower.error,
            "broker": _safe_url(self.app.broker_url),
            "done": request.query_params.get("done"),
            **context,
        }
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        remember_csrf(request, response, self.prefix)
        return response

    def link(self, path: str) -> str:
        return f"{self.prefix}{path}"

    async def live(self, request: Request) -> Response:
        """Server-sent events: the history's version, each time it moves."""

        async def stream() -> AsyncIterator[str]:
            seen = -1
            quiet = 0.0
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                version = self.follower.version
                if version != seen:
                    seen = version
                    quiet = 0.0
                    yield f"data: {version}\n\n"
                elif quiet >= LIVE_KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": keepalive\n\n"
                await asyncio.sleep(LIVE_POLL_SECONDS)
                quiet += LIVE_POLL_SECONDS

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _safe_url(url: str) -> str:
    """The broker URL without its password (shown in the page footer)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        rest = f"{user}:***@{host}" if user else f"***@{host}"
    return f"{scheme}{sep}{rest}"


def create_app(dashboard: Dashboard) -> Starlette:
    from . import actions, pages

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        dashboard.follower.start()
        try:
            yield
        finally:
            dashboard.follower.stop()

    inner: list[BaseRoute] = [
        *pages.routes(dashboard),
        *actions.routes(dashboard),
        Route("/live", dashboard.live),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    routes: list[BaseRoute]
    if dashboard.prefix:
        target = dashboard.prefix + "/"

        async def to_prefix(_: Request) -> Response:
            return RedirectResponse(target)

        routes = [
            Route("/", to_prefix),
            Route(dashboard.prefix, to_prefix),
            Mount(dashboard.prefix, routes=inner),
        ]
    else:
        routes = inner
    return Starlette(
        routes=routes,
        middleware=[Middleware(AuthMiddleware, access=dashboard.access, prefix=dashboard.prefix)],
        lifespan=lifespan,
    )
