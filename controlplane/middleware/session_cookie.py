"""Send a session cookie signed anew, on whatever response the request gets.

After the secret key is rotated, a dashboard session whose cookie was signed with a previous key
still signs its user in, and :func:`controlplane.auth.sessions.find_session` signs it again
with the current key. Any response may follow — a page, an API answer, a redirect, an error —
so the new cookie is added here, on the way out, rather than by each of them; a response that
sets or clears the session cookie itself (sign-in, sign-out, a password change) keeps its own.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.auth.sessions import RENEWED_COOKIE_STATE, SESSION_COOKIE, set_session_cookie
from controlplane.settings import Settings


class SessionCookieRenewalMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The request's state (request.state) lives in this dict, whoever reads it later.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def renewing_send(message: Message) -> None:
            renewed = state.get(RENEWED_COOKIE_STATE)
            if message["type"] == "http.response.start" and renewed is not None:
                headers = MutableHeaders(scope=message)
                own = f"{SESSION_COOKIE}="
                if not any(value.startswith(own) for value in headers.getlist("set-cookie")):
                    headers.append("set-cookie", self._cookie_header(renewed))
            await send(message)

        await self.app(scope, receive, renewing_send)

    def _cookie_header(self, value: str) -> str:
        """The Set-Cookie value sign-in would send: the same name, lifetime and flags."""
        carrier = Response()
        set_session_cookie(carrier, value, self.settings)
        return carrier.headers["set-cookie"]
