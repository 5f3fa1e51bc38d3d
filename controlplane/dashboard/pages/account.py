"""The signed-in person's own account: name, password, personal access tokens and sessions.

Each form runs a ``/v1/user`` operation. Changing the password ends every session of the user
(``POST /v1/user/password``); the operation gives this browser a fresh session, whose cookie the
page hands on, so the person stays signed in here and only the other browsers are signed out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from controlplane.api.pagination import Page
from controlplane.api.user import AccessToken, AccessTokenWithSecret, User, UserSession
from controlplane.dashboard.forms import text
from controlplane.dashboard.page import SIGN_IN, View, dashboard_page
from controlplane.errors import APIError, InvalidRequest

ACCOUNT = "/dashboard/account"
TOKENS = "/v1/user/access_tokens"
TOKEN = TOKENS + "/{access_token_id}"
SESSIONS = "/v1/user/sessions"
SESSION = SESSIONS + "/{session_id}"
EXPIRY_CHOICES = {"": None, "30d": 30, "90d": 90, "365d": 365}
NOTICES = {
    "renamed": "Name saved.",
    "password_changed": "Password changed. Every other session is signed out; this browser "
    "stays signed in.",
    "token_revoked": "Token revoked: it no longer works.",
    "session_revoked": "Session signed out.",
    "sessions_revoked": "Every other session is signed out.",
}


async def _page(view: View, *, error: APIError | None = None, status_code: int = 200,
                **context: Any) -> Response:  # fmt: skip
    user = await view.gateway.get(User, "/v1/user")
    tokens = await view.gateway.get(Page[AccessToken], TOKENS, query={"limit": "100"})
    sessions = await view.gateway.get(Page[UserSession], SESSIONS, query={"limit": "100"})
    return view.render(
        "account.html",
        status_code=status_code,
        user=user,
        tokens=tokens,
        sessions=sessions,
        error=error,
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
        **context,
    )


def _done(notice: str) -> str:
    return f"{ACCOUNT}?notice={notice}"


async def account_page(view: View) -> Response:
    return await _page(view)


async def rename(view: View) -> Response:
    form = await view.form()
    try:
        await view.gateway.run("PATCH", "/v1/user", body={"name": text(form, "name") or ""})
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code, form="name")
    return view.redirect(_done("renamed"))


def _secret(form: FormData, name: str) -> str:
    """A password field as typed: never stripped, spaces are part of a password."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


async def change_password(view: View) -> Response:
    form = await view.form()
    current, new, again = (
        _secret(form, name)
        for name in ("current_password", "new_password", "new_password_confirmation")
    )
    body: dict[str, Any] = {"new_password": new}
    if current:
        body["current_password"] = current
    try:
        if new != again:
            raise InvalidRequest(
                "The two new passwords differ: type the same one twice.",
                param="new_password_confirmation",
            )
        result = await view.gateway.run("POST", "/v1/user/password", body=body)
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code, form="password")
    assert isinstance(result, Response)
    # Every session ended, this one included; the operation started a new one for this browser.
    response = view.redirect(_done("password_changed"))
    for name, value in result.raw_headers:
        if name == b"set-cookie":
            response.raw_headers.append((name, value))
    return response


async def create_token(view: View) -> Response:
    form = await view.form()
    body: dict[str, Any] = {"name": text(form, "name") or ""}
    expiry = text(form, "expires_in") or ""
    if expiry not in EXPIRY_CHOICES:
        body["expires_at"] = expiry  # refused by the operation, named
    elif (days := EXPIRY_CHOICES[expiry]) is not None:
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    try:
        created = await view.gateway.run("POST", TOKENS, body=body)
    except APIError as error:
        return await _page(
            view, error=error, status_code=error.status_code, form="token", token_name=body["name"]
        )
    assert isinstance(created, AccessTokenWithSecret)
    return await _page(view, created=created, status_code=201)


async def revoke_token(view: View) -> Response:
    try:
        await view.gateway.run(
            "DELETE", TOKEN, params={"access_token_id": view.param("access_token_id")}
        )
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code)
    return view.redirect(_done("token_revoked"))


async def revoke_session(view: View) -> Response:
    try:
        revoked = await view.gateway.run(
            "DELETE", SESSION, params={"session_id": view.param("session_id")}
        )
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code)
    assert isinstance(revoked, UserSession)
    if revoked.current:  # this browser: that was signing out
        return RedirectResponse(f"{SIGN_IN}?notice=signed_out", status_code=303)
    return view.redirect(_done("session_revoked"))


async def revoke_other_sessions(view: View) -> Response:
    """Sign out every other browser: each session revoked (and audited) on its own."""
    sessions = await view.gateway.get(Page[UserSession], SESSIONS, query={"limit": "100"})
    try:
        while True:
            for session in sessions.data:
                if not session.current:
                    await view.gateway.run("DELETE", SESSION, params={"session_id": session.id})
            if not sessions.has_more:
                break
            sessions = await view.gateway.get(Page[UserSession], SESSIONS, query={"limit": "100"})
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code)
    return view.redirect(_done("sessions_revoked"))


routes = [
    dashboard_page("/account", account_page),
    dashboard_page("/account/name", rename, methods=("POST",)),
    dashboard_page("/account/password", change_password, methods=("POST",)),
    dashboard_page("/account/access-tokens", create_token, methods=("POST",)),
    dashboard_page("/account/access-tokens/{access_token_id}", revoke_token, methods=("POST",)),
    dashboard_page("/account/sessions", revoke_other_sessions, methods=("POST",)),
    dashboard_page("/account/sessions/{session_id}", revoke_session, methods=("POST",)),
]
