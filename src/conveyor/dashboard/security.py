"""Who may see the dashboard and who may act: HTTP basic auth, read-only users, and the
token that protects actions from cross-site requests.

Without users the dashboard listens on the loopback interface only (the CLI refuses any
other address): Flower open on 0.0.0.0 with no auth is how task queues get taken over.

Cross-site requests: each browser gets a random token in a ``SameSite=Strict`` cookie;
every action form carries it in a hidden field, and an action whose field does not
match its cookie (a form posted from another site cannot read or send the cookie) is
refused with 403. A request whose ``Origin`` names another site is refused as well.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "Access",
    "AuthMiddleware",
    "csrf_token",
    "is_loopback",
    "parse_users",
    "same_origin",
]

CSRF_COOKIE = "conveyor_csrf"
CSRF_FIELD = "csrf"


@dataclass(slots=True)
class Access:
    """The users (name -> password) and which of them may only look."""

    users: dict[str, str] = field(default_factory=dict)
    read_only_users: frozenset[str] = frozenset()
    read_only: bool = False  # everyone, whatever their name

    def user_of(self, authorization: str | None) -> str | None:
        """The user a ``Basic`` header proves, or None."""
        if not authorization or not authorization.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, _, password = decoded.partition(":")
        expected = self.users.get(name)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return name

    def may_act(self, user: str | None) -> bool:
        return not self.read_only and (user is None or user not in self.read_only_users)


def parse_users(pairs: Iterable[str]) -> dict[str, str]:
    """``user:password`` pairs (Flower's ``--basic-auth``; commas separate several)."""
    users: dict[str, str] = {}
    for given in pairs:
        for pair in given.split(","):
            name, sep, password = pair.partition(":")
            if not sep or not name or not password:
                raise ValueError(f"expected user:password, got {pair!r}")
            users[name] = password
    return users


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class AuthMiddleware:
    """Asks for a password when there are users; puts the user and whether they may act
    in ``scope["state"]`` for the pages."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = None
        if self.access.users:
            user = self.access.user_of(Headers(scope=scope).get("authorization"))
            if user is None:
                response = PlainTextResponse(
                    "This dashboard needs a user name and password.",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="conveyor", charset="UTF-8"'},
                )
                await response(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["user"] = user
        state["may_act"] = self.access.may_act(user)
        await self.app(scope, receive, send)


def csrf_token(request: Request) -> str:
    """This browser's token (a new one when it has none; :func:`remember_csrf` sets it)."""
    token = request.cookies.get(CSRF_COOKIE)
    if not token or len(token) < 20:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(24)
        request.state.new_csrf = token
    return token


def remember_csrf(request: Request, response: Response, prefix: str) -> None:
    token = getattr(request.state, "new_csrf", None)
    if token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict", path=prefix or "/"
        )


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def csrf_ok(request: Request, form_token: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not form_token or not same_origin(request):
        return False
    return hmac.compare_digest(cookie.encode(), form_token.encode())
