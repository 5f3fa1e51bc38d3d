"""``/v1/user``: the signed-in user's own account, password, personal access tokens and sessions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from controlplane.api.audit_events import AuditEvent
from controlplane.api.fields import FutureMoment, Name, Password
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Call, Operation
from controlplane.auth.admin import issue_access_token
from controlplane.auth.login_throttle import LoginThrottle
from controlplane.auth.passwords import hash_password_async, verify_password_async
from controlplane.auth.sessions import (
    client_ip,
    revoke_sessions,
    set_session_cookie,
    start_session,
)
from controlplane.errors import InvalidRequest, PermissionDenied, RateLimited
from controlplane.models import AuditEvent as AuditEventRow
from controlplane.models import PersonalAccessToken, Session
from controlplane.models import User as UserRow


class User(BaseModel):
    object: Literal["user"] = "user"
    id: str
    email: str
    name: str
    has_password: bool
    created_at: datetime

    @classmethod
    def of(cls, row: UserRow) -> User:
        return cls(
            id=row.id,
            email=row.email,
            name=row.name,
            has_password=row.password_hash is not None,
            created_at=row.created_at,
        )


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str | None = Field(
        default=None, max_length=1024, description="Required when the account has a password."
    )
    new_password: Password


class AccessToken(BaseModel):
    object: Literal["access_token"] = "access_token"
    id: str
    name: str
    redacted: str
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: PersonalAccessToken) -> AccessToken:
        return cls(
            id=row.id,
            name=row.name,
            redacted=f"{row.display_prefix}…{row.last_four}",
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            created_at=row.created_at,
        )


class AccessTokenWithSecret(AccessToken):
    token: str = Field(description="The token itself. Shown in this answer only.")


class UserSession(BaseModel):
    """A signed-in browser (or cookie client) of the user's; the cookie itself is never shown."""

    object: Literal["session"] = "session"
    id: str
    method: str = Field(description="How it signed in: password or oidc.")
    ip: str
    user_agent: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    current: bool = Field(description="True for the session making this request.")

    @classmethod
    def of(cls, row: Session, current_session_id: str | None) -> UserSession:
        return cls(
            id=row.id,
            method=row.method,
            ip=row.ip,
            user_agent=row.user_agent,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            current=row.id == current_session_id,
        )


class AccessTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    expires_at: FutureMoment | None = Field(
        default=None, description="Recommended; tokens without expiry live until revoked."
    )


async def retrieve_user(call: Call) -> User:
    return User.of(call.user)


async def update_user(call: Call) -> User:
    user = call.user
    user.name = call.body_as(UserUpdate).name
    await user.save(update_fields=["name"])
    return User.of(user)


async def _check_current_password(call: Call, password: str | None) -> None:
    """The account's current password, checked like a sign-in: whoever holds a stolen
    personal access token must not get unlimited guesses at the password behind it.

    The attempt takes its slot in the sign-in failure counts (the account's and the IP's, the
    same ones ``POST /v1/auth/login`` uses) before the password is hashed; every failure,
    refused or locked, is in the account's security log. Not in a transaction: a failure's
    audit record must outlive the error answer.
    """
    user = call.user
    assert user.password_hash is not None
    if password is None:
        raise InvalidRequest(
            "current_password is missing: this account has a password, so changing it "
            "needs the current one.",
            code="parameter_missing",
            param="current_password",
        )
    throttle: LoginThrottle = call.request.app.state.login_throttle
    try:
        slot = await throttle.take(user.email, client_ip(call.request))
    except RateLimited:
        await _change_failed(call, "locked")
        raise
    try:
        valid = await verify_password_async(user.password_hash, password)
    except BaseException:
        await throttle.not_evaluated(slot)
        raise
    if not valid:
        await _change_failed(call, "incorrect_password")
        raise InvalidRequest(
            "The current password is not correct.",
            code="incorrect_password",
            param="current_password",
        )
    await throttle.signed_in(slot)


async def _change_failed(call: Call, reason: str) -> None:
    await call.audit(
        "user.password_change_failed", target_type="user", target_id=call.user.id, reason=reason
    )


async def change_password(call: Call) -> Response:
    body = call.body_as(PasswordChange)
    user = call.user
    if user.password_hash is not None:
        await _check_current_password(call, body.current_password)
    new_hash = await hash_password_async(body.new_password)
    response = JSONResponse(User.of(user).model_dump(mode="json"))
    async with in_transaction():
        user.password_hash = new_hash
        await user.save(update_fields=["password_hash"])
        ended = await revoke_sessions(user.id)
        await call.audit(
            "user.password_changed", target_type="user", target_id=user.id, sessions_ended=ended
        )
        if call.admin.session_id is not None:
            # Every session ended, this browser's included; it gets a fresh one.
            _, cookie = await start_session(user, "password", call.request, call.settings)
            set_session_cookie(response, cookie, call.settings)
    await call.run_after_commit()
    return response


async def list_access_tokens(call: Call) -> Page[AccessToken]:
    query = PersonalAccessToken.filter(user_id=call.user.id)
    return await paginate(query, call.query_as(ListQuery), AccessToken.of)


async def create_access_token(call: Call) -> AccessTokenWithSecret:
    if call.admin.session_id is None:
        raise PermissionDenied(
            "Personal access tokens are created from a signed-in session, not with a token.",
            code="session_required",
        )
    body = call.body_as(AccessTokenCreate)
    row, token = await issue_access_token(
        call.user,
        name=body.name,
        pepper=call.settings.require_secret_key(),
        expires_at=body.expires_at,
    )
    await call.audit(
        "access_token.created", target_type="access_token", target_id=row.id, name=row.name
    )
    return AccessTokenWithSecret(**AccessToken.of(row).model_dump(), token=token)


def _token(call: Call) -> PersonalAccessToken:
    return call.row(PersonalAccessToken, "access_token_id")


async def retrieve_access_token(call: Call) -> AccessToken:
    return AccessToken.of(_token(call))


async def revoke_access_token(call: Call) -> AccessToken:
    row = _token(call)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await row.save(update_fields=["revoked_at"])
        await call.audit(
            "access_token.revoked", target_type="access_token", target_id=row.id, name=row.name
        )
    return AccessToken.of(row)


async def list_sessions(call: Call) -> Page[UserSession]:
    """The user's live sessions: neither revoked nor expired."""
    query = Session.filter(
        user_id=call.user.id, revoked_at__isnull=True, expires_at__gt=datetime.now(UTC)
    )
    current = call.admin.session_id
    return await paginate(query, call.query_as(ListQuery), lambda row: UserSession.of(row, current))


def _session(call: Call) -> Session:
    return call.row(Session, "session_id")


async def retrieve_session(call: Call) -> UserSession:
    return UserSession.of(_session(call), call.admin.session_id)


async def revoke_session(call: Call) -> UserSession:
    """End one session: the browser holding it is signed out on its next request. Revoking the
    current session is signing out."""
    row = _session(call)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await row.save(update_fields=["revoked_at"])
        await call.audit(
            "session.revoked",
            target_type="session",
            target_id=row.id,
            method=row.method,
            session_ip=row.ip,
            current=row.id == call.admin.session_id,
        )
    return UserSession.of(row, call.admin.session_id)


async def list_user_audit_events(call: Call) -> Page[AuditEvent]:
    """Account-level events (sign-ins, password, tokens) about or by the user."""
    rows = AuditEventRow.filter(
        Q(actor_id=call.user.id) | Q(target_id=call.user.id), organization_id__isnull=True
    )
    return await paginate(rows, call.query_as(ListQuery), AuditEvent.of)


TOKENS = "/v1/user/access_tokens"
SESSIONS = "/v1/user/sessions"
operations = [
    Operation("GET", "/v1/user", retrieve_user, "Retrieve your account", "User", response=User),
    Operation(
        "PATCH", "/v1/user", update_user, "Change your name", "User", body=UserUpdate, response=User
    ),
    Operation(
        "POST",
        "/v1/user/password",
        change_password,
        "Change your password (ends all your sessions; this browser gets a new one)",
        "User",
        body=PasswordChange,
        response=User,
        description="A wrong current_password is a 400 `incorrect_password`, a missing one "
        "(when the account has a password) a 400 `parameter_missing`. Attempts are counted "
        "with sign-in failures, before the password is checked: past the limit, a 429 "
        "`too_many_login_attempts` with Retry-After.",
        errors={429: "Too many wrong passwords (sign-in and here) for this account or address"},
        transactional=False,
    ),
    Operation(
        "GET",
        "/v1/user/audit_events",
        list_user_audit_events,
        "Your account's security events (sign-ins, password, tokens)",
        "User",
        query=ListQuery,
        response=Page[AuditEvent],
    ),
    Operation(
        "GET",
        TOKENS,
        list_access_tokens,
        "List your personal access tokens",
        "Access tokens",
        query=ListQuery,
        response=Page[AccessToken],
    ),
    Operation(
        "POST",
        TOKENS,
        create_access_token,
        "Create a personal access token (from a session; shown once)",
        "Access tokens",
        body=AccessTokenCreate,
        response=AccessTokenWithSecret,
        status_code=201,
    ),
    Operation(
        "GET",
        TOKENS + "/{access_token_id}",
        retrieve_access_token,
        "Retrieve a personal access token",
        "Access tokens",
        response=AccessToken,
    ),
    Operation(
        "DELETE",
        TOKENS + "/{access_token_id}",
        revoke_access_token,
        "Revoke a personal access token",
        "Access tokens",
        response=AccessToken,
    ),
    Operation(
        "GET",
        SESSIONS,
        list_sessions,
        "List your live sessions (signed-in browsers)",
        "Sessions",
        query=ListQuery,
        response=Page[UserSession],
    ),
    Operation(
        "GET",
        SESSIONS + "/{session_id}",
        retrieve_session,
        "Retrieve one of your sessions",
        "Sessions",
        response=UserSession,
    ),
    Operation(
        "DELETE",
        SESSIONS + "/{session_id}",
        revoke_session,
        "Revoke one of your sessions (signs that browser out)",
        "Sessions",
        response=UserSession,
    ),
]
