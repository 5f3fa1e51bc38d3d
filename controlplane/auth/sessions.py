"""Dashboard sessions: a signed, HttpOnly, SameSite cookie naming a server-side session row.

The cookie holds ``<bk_ses_ token>.<signature>``. The signature (HMAC-SHA256 under a key
derived from ``BRIK_SECRET_KEY``) lets a forged or mangled cookie be refused without touching
the database; the token itself is looked up by its peppered hash, so the database never holds
anything that would sign someone in. Revocation is server-side: logout revokes the session,
a password change revokes every session of the user.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from controlplane.auth.keys import SESSION_TOKEN_PREFIX, generate_secret, hash_key, looks_like_key
from controlplane.models import Session, User
from controlplane.settings import Settings

SESSION_COOKIE = "brik_session"


def _signature(token: str, secret_key: str) -> str:
    key = hmac.new(secret_key.encode(), b"brik session cookie", hashlib.sha256).digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:400]


async def start_session(
    user: User, method: str, request: Request, settings: Settings
) -> tuple[Session, str]:
    """A new session for ``user``; returns it and the cookie value to set."""
    secret_key = settings.require_secret_key()
    issued = generate_secret(SESSION_TOKEN_PREFIX, secret_key)
    session = await Session.create(
        user=user,
        token_hash=issued.key_hash,
        method=method,
        ip=client_ip(request),
        user_agent=user_agent(request),
        expires_at=datetime.now(UTC) + timedelta(hours=settings.session_lifetime_hours),
    )
    return session, f"{issued.plaintext}.{_signature(issued.plaintext, secret_key)}"


async def find_session(cookie: str, settings: Settings) -> Session | None:
    """The live session a cookie names, or None (forged, unknown, revoked or expired)."""
    secret_key = settings.require_secret_key()
    token, _, signature = cookie.partition(".")
    if not looks_like_key(token, SESSION_TOKEN_PREFIX) or not hmac.compare_digest(
        signature, _signature(token, secret_key)
    ):
        return None
    session = await Session.get_or_none(
        token_hash=hash_key(token, secret_key), revoked_at__isnull=True
    ).select_related("user")
    if session is None or session.expires_at <= datetime.now(UTC):
        return None
    return session


async def revoke_sessions(user_id: str, *, except_session_id: str | None = None) -> int:
    query = Session.filter(user_id=user_id, revoked_at__isnull=True)
    if except_session_id:
        query = query.exclude(id=except_session_id)
    return await query.update(revoked_at=datetime.now(UTC))


def set_session_cookie(response: Response, value: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=settings.session_lifetime_hours * 3600,
        path="/",
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, secure=settings.secure_cookies, samesite="lax"
    )
