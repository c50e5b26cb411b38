"""What makes the dashboard safe to expose: the user's ``auth`` check, cross-site request
forgery protection for its actions, and the headers that keep its pages to their own origin.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeAlias
from urllib.parse import parse_qsl, urlsplit

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Auth: TypeAlias = Callable[[Request], "bool | Awaitable[bool]"]
"""Decides whether a request may see the dashboard: True lets it in, False answers 401. It
may also raise an ``HTTPException`` of its own (e.g. a 401 asking for HTTP basic credentials)."""

CSRF_COOKIE = "aqueue_csrf"
CSRF_FIELD = "csrf"
"""The form field that must repeat the cookie's token (a double-submit token): a page of
another site can make a browser send the cookie, but cannot read it to fill the field."""

MAX_FORM = 4096
"""Bytes an action's form may hold (a token and the page to return to)."""

POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
"""The pages' Content-Security-Policy: nothing from another origin, no inline script. A
value that escaped its escaping still could not run."""
HEADERS = [
    (b"content-security-policy", POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


async def check_auth(auth: Auth | None, request: Request) -> None:
    """Raise a 401 unless ``auth`` (when given) lets ``request`` in."""
    if auth is None:
        return
    allowed = auth(request)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    if not allowed:
        raise HTTPException(401, "not allowed: the dashboard's auth refused this request")


def csrf_token(request: Request) -> str:
    """The browser's token: its cookie's, or a new one (set by :func:`keep_token`)."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)


def keep_token(request: Request, response: Response, token: str) -> None:
    """Set the token cookie when the browser has none yet."""
    if request.cookies.get(CSRF_COOKIE) == token:
        return
    response.set_cookie(
        CSRF_COOKIE,
        token,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def check_action(request: Request) -> dict[str, str] | None:
    """Refuse (403) an action that another site may have sent; return its form, if a form.

    A request whose ``Origin`` names another host than the request's (``Host``, or
    ``X-Forwarded-Host`` behind a proxy) is refused. A form (what the pages send)
    must carry the token of its cookie (:data:`CSRF_FIELD`). A tool sends JSON instead
    and needs no token: a page of another site cannot send JSON without the CORS preflight
    the dashboard never answers. Any other body (text, multipart: what another site's form
    can send) is refused.
    """
    origin = request.headers.get("origin")
    # Behind a proxy that rewrites Host, the host the browser asked for is X-Forwarded-Host
    # (which a page of another site cannot set without a CORS preflight).
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    if origin is not None and urlsplit(origin).netloc not in hosts:
        raise HTTPException(403, f"refused: a request from another site ({origin})")
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "application/json":
        return None
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(
            415, "send the action's form, or JSON from a tool (Content-Type: application/json)"
        )
    body = await request.body()
    if len(body) > MAX_FORM:
        raise HTTPException(413, f"a form of the dashboard holds less than {MAX_FORM} bytes")
    form = dict(parse_qsl(body.decode(errors="replace")))
    sent, cookie = form.get(CSRF_FIELD, ""), request.cookies.get(CSRF_COOKIE, "")
    if not (sent and cookie and secrets.compare_digest(sent, cookie)):
        raise HTTPException(403, "refused: the form's token is missing or stale; reload the page")
    return form


class SecurityHeaders:
    """ASGI middleware: :data:`HEADERS` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
