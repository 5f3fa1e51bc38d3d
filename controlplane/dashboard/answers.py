"""Every answer under ``/dashboard/`` is one a browser may show: HTML, never framed or sniffed.

Pages render their own refusals, with the frame around them (``page.py``). Some answers never
reach a page: an address no page has (404), a method a page does not take (405, ``HEAD`` on a
form's address, ``OPTIONS``, ``PUT``), a body over the size limit (413, refused before any
routing), a form the parser gives up on (too many files, no multipart boundary), Redis or the
database gone mid-page (503), a bug (500). The app answers those in the API's one JSON error
shape (``controlplane/errors.py``): to a person, a screen of raw JSON, without the dashboard's
Content-Security-Policy. :class:`DashboardAnswers`, around the whole app, turns each into the
dashboard's error page — same status, same message and code, the headers that mattered
(``Allow``, ``Retry-After``, ``Request-Id``) kept — and gives every dashboard answer the security
headers (:func:`~controlplane.dashboard.rendering.security_headers`) it lacks: redirects are
neither cached nor framed, and static files are never sniffed as another type. Static files
keep their own caching.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.dashboard.rendering import error_page, security_headers
from controlplane.errors import APIError
from controlplane.settings import Settings

PREFIX = "/dashboard"
STATIC_PREFIX = "/dashboard/static/"
# Headers of the API's error answer that the page keeps; its own (type, length) are the page's.
_DROPPED = frozenset({"content-type", "content-length"})


def is_dashboard_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_of(status: int, body: bytes) -> APIError:
    """The API error a JSON error body describes (``{"error": {"code", "message", "param"}}``)."""
    try:
        described: Any = json.loads(body)["error"]
        message, code = str(described["message"]), str(described["code"])
        param = described.get("param")
    except (ValueError, TypeError, KeyError):
        message, code, param = "The request could not be answered.", "error", None
    return APIError(
        message, code=code, param=param if isinstance(param, str) else None, status_code=status
    )


class DashboardAnswers:
    """Middleware around the whole app (only the session-cookie renewal is outside it): the
    dashboard's error pages and security headers (module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        settings: Settings = scope["app"].state.settings
        static = scope["path"].startswith(STATIC_PREFIX)
        held: Message | None = None  # the start of a JSON error, until its body is read
        body = bytearray()

        async def answer(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"])
                media_type = headers.get("content-type", "").split(";", 1)[0].strip()
                if message["status"] >= 400 and media_type == "application/json":
                    held = message
                    return
                added = MutableHeaders(scope=message)
                for name, value in security_headers(settings).items():
                    if name.lower() not in added and not (static and name == "Cache-Control"):
                        added[name] = value
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                await self._error_page(scope, held, bytes(body), receive, send)

        await self.app(scope, receive, answer)

    @staticmethod
    async def _error_page(
        scope: Scope, start: Message, body: bytes, receive: Receive, send: Send
    ) -> None:
        request = Request(scope)
        page = error_page(request, error_of(start["status"], body), {"frame": None})
        kept = [
            (name, value)
            for name, value in start["headers"]
            if name.decode("latin-1").lower() not in _DROPPED
            and name.decode("latin-1") not in page.headers
        ]
        page.raw_headers.extend(kept)
        await page(scope, receive, send)
