"""Who may see the dashboard and who may act: HTTP basic auth, read-only users, a bearer
token, and the token that protects actions from cross-site requests.

Without users or a token the dashboard listens on the loopback interface only (the CLI
refuses any other address): Flower open on 0.0.0.0 with no auth is how task queues get
taken over.

The bearer token (``--token``, setting ``dashboard_token``) is for scripts and for a
browser alike: ``Authorization: Bearer TOKEN``, or a first visit to any page with
``?token=TOKEN``, which answers with a cookie (HttpOnly, SameSite=Strict) holding a hash
of the token and sends the browser on to the same page without it (the token leaves the
address bar and the history). Whoever holds the token may act unless ``--read-only``.

Cross-site requests: each browser gets a random token in a ``SameSite=Strict`` cookie;
every action form carries it in a hidden field, and an action whose field does not
match its cookie (a form posted from another site cannot read or send the cookie) is
refused with 403. A request whose ``Origin`` names another site is refused as well.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "CSRF_COOKIE",
    "MIN_TOKEN_LENGTH",
    "TOKEN_COOKIE",
    "Access",
    "AuthMiddleware",
    "check_token",
    "csrf_token",
    "is_loopback",
    "parse_users",
    "same_origin",
]

CSRF_COOKIE = "conveyor_csrf"
CSRF_FIELD = "csrf"
TOKEN_COOKIE = "conveyor_token"
TOKEN_PARAM = "token"
MIN_TOKEN_LENGTH = 16  # a shorter one could be guessed over the network
TOKEN_USER = "(token)"  # the user a token proves, as the pages name it


@dataclass(slots=True)
class Access:
    """The users (name -> password) and which of them may only look."""

    users: dict[str, str] = field(default_factory=dict)
    read_only_users: frozenset[str] = frozenset()
    read_only: bool = False  # everyone, whatever their name
    token: str | None = None

    @property
    def guarded(self) -> bool:
        """Must a request prove who it is?"""
        return bool(self.users) or self.token is not None

    def cookie_of_token(self) -> str:
        """What the token cookie holds: a hash of the token, not the token itself."""
        assert self.token is not None
        return hashlib.sha256(b"conveyor-dashboard:" + self.token.encode()).hexdigest()

    def token_ok(self, given: str | None) -> bool:
        if self.token is None or not given:
            return False
        return hmac.compare_digest(self.token.encode(), given.encode())

    def token_user(self, authorization: str | None, cookie: str | None) -> str | None:
        """:data:`TOKEN_USER` when a ``Bearer`` header or the token cookie proves the
        token, else None."""
        if self.token is None:
            return None
        if authorization and authorization.lower().startswith("bearer "):
            return TOKEN_USER if self.token_ok(authorization[7:].strip()) else None
        if cookie and hmac.compare_digest(cookie.encode(), self.cookie_of_token().encode()):
            return TOKEN_USER
        return None

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


def check_token(token: str) -> None:
    if len(token) < MIN_TOKEN_LENGTH or token != token.strip():
        raise ValueError(
            f"expected a token of at least {MIN_TOKEN_LENGTH} characters without spaces "
            f"around it (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )


class AuthMiddleware:
    """Asks for a password or the token when either is set; puts the user and whether
    they may act in ``scope["state"]`` for the pages."""

    def __init__(self, app: ASGIApp, access: Access, prefix: str = "") -> None:
        self.app = app
        self.access = access
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = None
        if self.access.guarded:
            request = Request(scope)
            given = request.query_params.get(TOKEN_PARAM)
            if given is not None and self.access.token_ok(given):
                await self._remember_token(request)(scope, receive, send)
                return
            authorization = request.headers.get("authorization")
            user = self.access.user_of(authorization) or self.access.token_user(
                authorization, request.cookies.get(TOKEN_COOKIE)
            )
            if user is None:
                await self._refuse()(scope, receive, send)
                return
        state = scope.setdefault("state", {})
        state["user"] = user
        state["may_act"] = self.access.may_act(user)
        await self.app(scope, receive, send)

    def _remember_token(self, request: Request) -> Response:
        """The token came in the address: a cookie instead, and the same page without it."""
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_PARAM]
        target = request.url.path + ("?" + urlencode(rest) if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            self.access.cookie_of_token(),
            httponly=True,
            samesite="strict",
            path=self.prefix or "/",
        )
        return response

    def _refuse(self) -> Response:
        if self.access.users:
            text = "This dashboard needs a user name and password"
            text += " (or its token)." if self.access.token else "."
            challenge = 'Basic realm="conveyor", charset="UTF-8"'
        else:
            text = "This dashboard needs its token: open it with ?token=... once."
            challenge = 'Bearer realm="conveyor"'
        return PlainTextResponse(text, status_code=401, headers={"WWW-Authenticate": challenge})


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
