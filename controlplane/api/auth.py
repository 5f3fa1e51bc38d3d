"""``/v1/auth``: signing in and out of the dashboard and the management API.

Password sign-in answers one generic error for an unknown email, a wrong password or an
account without a password, spends the same argon2 time on each, and is throttled per
account and per IP (``controlplane/auth/login_throttle.py``). Every attempt is audited.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from controlplane import audit
from controlplane.api.fields import Email
from controlplane.api.routing import Auth, Call, Operation
from controlplane.api.user import User
from controlplane.auth.login_throttle import LoginThrottle
from controlplane.auth.oidc import OidcLogin
from controlplane.auth.passwords import verify_password_async
from controlplane.auth.sessions import (
    clear_session_cookie,
    client_ip,
    set_session_cookie,
    start_session,
)
from controlplane.errors import AuthenticationFailed, InvalidRequest, NotFound, RateLimited
from controlplane.models import Session
from controlplane.models import User as UserRow

_INVALID = "Invalid email or password."


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    password: str = Field(min_length=1, max_length=1024)


class LoggedOut(BaseModel):
    object: Literal["logout"] = "logout"
    signed_out: bool


class OidcMethod(BaseModel):
    enabled: bool
    name: str | None = None
    authorize_url: str | None = None


class LoginMethods(BaseModel):
    object: Literal["login_methods"] = "login_methods"
    password: bool = True
    oidc: OidcMethod


class OidcAuthorizeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    next: str = Field(
        default="/dashboard/",
        max_length=500,
        description="Where to land after signing in (a path on this site).",
    )


class OidcCallbackQuery(BaseModel):
    model_config = ConfigDict(extra="allow")
    state: str | None = Field(default=None, max_length=500)
    code: str | None = Field(default=None, max_length=2000)


async def _signed_in(call: Call, user: UserRow, method: str, response: Response) -> Response:
    _, cookie = await start_session(user, method, call.request, call.settings)
    set_session_cookie(response, cookie, call.settings)
    await call.audit(
        "user.login_succeeded",
        actor=audit.Actor.user(user),
        target_type="user",
        target_id=user.id,
        method=method,
    )
    return response


async def login(call: Call) -> Response:
    body = call.body_as(Login)
    throttle: LoginThrottle = call.request.app.state.login_throttle
    try:
        # Counted before the password is hashed: see controlplane/auth/login_throttle.py.
        slot = await throttle.take(body.email, client_ip(call.request))
    except RateLimited:
        await _failed(call, body.email, await UserRow.get_or_none(email=body.email), "locked")
        raise
    try:
        user = await UserRow.get_or_none(email=body.email)
        valid = await verify_password_async(user.password_hash if user else None, body.password)
    except BaseException:
        await throttle.not_evaluated(slot)
        raise
    if not valid:
        await _failed(call, body.email, user, "invalid_credentials")
        raise AuthenticationFailed(_INVALID, code="invalid_credentials")
    assert user is not None
    await throttle.signed_in(slot)
    return await _signed_in(
        call, user, "password", JSONResponse(User.of(user).model_dump(mode="json"))
    )


async def _failed(call: Call, email: str, user: UserRow | None, reason: str) -> None:
    await call.audit(
        "user.login_failed",
        actor=audit.Actor("anonymous", None, email),
        target_type="user" if user else None,
        target_id=user.id if user else None,
        reason=reason,
    )


async def logout(call: Call) -> Response:
    session_id = call.admin.session_id
    if session_id is None:
        raise InvalidRequest(
            "Signing out ends a session; revoke a personal access token instead.",
            code="session_required",
        )
    await Session.filter(id=session_id).update(revoked_at=datetime.now(UTC))
    await call.audit("user.logged_out", target_type="user", target_id=call.user.id)
    response = JSONResponse(LoggedOut(signed_out=True).model_dump(mode="json"))
    clear_session_cookie(response, call.settings)
    return response


def _oidc(request: Request) -> OidcLogin:
    oidc: OidcLogin | None = request.app.state.oidc
    if oidc is None:
        raise NotFound("OpenID Connect sign-in is not configured.", code="oidc_not_configured")
    return oidc


async def login_methods(call: Call) -> LoginMethods:
    oidc: OidcLogin | None = call.request.app.state.oidc
    if oidc is None:
        return LoginMethods(oidc=OidcMethod(enabled=False))
    return LoginMethods(
        oidc=OidcMethod(
            enabled=True, name=oidc.provider_name, authorize_url="/v1/auth/oidc/authorize"
        )
    )


# Browsers read a backslash as a slash (/\evil.example is //evil.example) and drop tabs and
# newlines from a URL (/<tab>/evil.example): none of them, nor a space, belongs in a local path.
_NOT_IN_A_LOCAL_PATH = re.compile(r"[\\\x00-\x20\x7f]")


def _local_path(target: str) -> str:
    """Only same-site paths: an open redirect would hand sessions to phishing pages."""
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or _NOT_IN_A_LOCAL_PATH.search(target)
    ):
        return "/dashboard/"
    return target


async def oidc_authorize(call: Call) -> Response:
    oidc = _oidc(call.request)
    call.request.session["next"] = _local_path(call.query_as(OidcAuthorizeQuery).next)
    return await oidc.redirect(call.request)


async def oidc_callback(call: Call) -> Response:
    oidc = _oidc(call.request)
    identity = await oidc.identity(call.request)
    user = await UserRow.get_or_none(email=identity.email)
    if user is None:
        if not call.settings.oidc_allow_signup:
            await _failed(call, identity.email, None, "signup_disabled")
            raise AuthenticationFailed(
                "No account uses this email, and sign-up is closed. Ask for an invitation.",
                code="signup_disabled",
            )
        user = await UserRow.create(email=identity.email, name=identity.name)
        await call.audit(
            "user.created",
            actor=audit.Actor.user(user),
            target_type="user",
            target_id=user.id,
            via="oidc",
        )
    target = _local_path(str(call.request.session.pop("next", "/dashboard/")))
    return await _signed_in(call, user, "oidc", RedirectResponse(target, status_code=303))


operations = [
    Operation(
        "POST",
        "/v1/auth/login",
        login,
        "Sign in with email and password (sets the session cookie)",
        "Sign-in",
        auth=Auth.NONE,
        body=Login,
        response=User,
        transactional=False,
        errors={
            401: "Wrong email or password (`invalid_credentials`), one answer for both",
            429: "Too many failed sign-ins for this account or from this address",
        },
    ),
    Operation(
        "POST",
        "/v1/auth/logout",
        logout,
        "Sign out (ends this session)",
        "Sign-in",
        response=LoggedOut,
        description="Ends the session whose cookie comes with the call; called with a "
        "personal access token instead, it is a 400 `session_required` (revoke the token).",
    ),
    Operation(
        "GET",
        "/v1/auth/methods",
        login_methods,
        "Which sign-in methods are enabled",
        "Sign-in",
        auth=Auth.NONE,
        response=LoginMethods,
    ),
    Operation(
        "GET",
        "/v1/auth/oidc/authorize",
        oidc_authorize,
        "Start OpenID Connect sign-in (redirects to the provider)",
        "Sign-in",
        auth=Auth.NONE,
        query=OidcAuthorizeQuery,
        status_code=302,
        errors={502: "The sign-in provider could not be reached (`oidc_unavailable`)"},
    ),
    Operation(
        "GET",
        "/v1/auth/oidc/callback",
        oidc_callback,
        "Finish OpenID Connect sign-in (the provider redirects here)",
        "Sign-in",
        auth=Auth.NONE,
        query=OidcCallbackQuery,
        status_code=303,
        transactional=False,
        errors={401: "No account has this email and sign-up is closed (`signup_disabled`)"},
    ),
]
