"""Dashboard sessions: a signed, HttpOnly, SameSite cookie naming a server-side session row.

The cookie holds ``<bk_ses_ token>.<signature>``. The signature (HMAC-SHA256 under a key
derived from ``BRIK_SECRET_KEY``) lets a forged or mangled cookie be refused without touching
the database; the token itself is looked up by its peppered hash, so the database never holds
anything that would sign someone in. Revocation is server-side: logout revokes the session,
a password change revokes every session of the user.

When the secret key is rotated, a cookie signed (and a session hashed) under a previous key
still signs its user in, and moves over on that request: the row is re-hashed and the cookie
signed anew under the current key. The signed-anew cookie goes out on whatever response the
request gets (:func:`renew_session_cookie`, set by
``controlplane/middleware/session_cookie.py``), so a browser that keeps using the dashboard
never notices the rotation.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from controlplane.auth.keys import SESSION_TOKEN_PREFIX, generate_secret, looks_like_key
from controlplane.auth.peppers import PepperRing
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
        pepper_id=issued.pepper_id,
        method=method,
        ip=client_ip(request),
        user_agent=user_agent(request),
        expires_at=datetime.now(UTC) + timedelta(hours=settings.session_lifetime_hours),
    )
    return session, f"{issued.plaintext}.{_signature(issued.plaintext, secret_key)}"


@dataclass(frozen=True, slots=True)
class FoundSession:
    """The live session a cookie names; ``renewed_cookie``: the same session signed with the
    current secret key, to set on the response, when the cookie was signed with a previous one."""

    session: Session
    renewed_cookie: str | None = None


async def find_session(cookie: str, settings: Settings) -> FoundSession | None:
    """The live session a cookie names, or None (forged, unknown, revoked or expired).

    The signature and the hash may be under any key of the ring (``BRIK_SECRET_KEY`` or a
    previous one); a session that rests on a previous key is moved to the current one: its
    row re-hashed, its cookie signed anew.
    """
    peppers = PepperRing.from_settings(settings)
    token, _, signature = cookie.partition(".")
    if not looks_like_key(token, SESSION_TOKEN_PREFIX):
        return None
    signed_by = next(
        (
            pepper
            for pepper in peppers.peppers
            if hmac.compare_digest(signature, _signature(token, pepper.secret))
        ),
        None,
    )
    if signed_by is None:
        return None
    session = (
        await Session.filter(token_hash__in=peppers.hashes(token), revoked_at__isnull=True)
        .select_related("user")
        .first()
    )
    if session is None or session.expires_at <= datetime.now(UTC):
        return None
    await peppers.move_to_current(session, "token_hash", token)
    if signed_by is peppers.current:
        return FoundSession(session)
    return FoundSession(session, f"{token}.{_signature(token, peppers.current.secret)}")


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


RENEWED_COOKIE_STATE = "brik_renewed_session_cookie"


def renew_session_cookie(request: Request, value: str) -> None:
    """Have this request's response set the session cookie to ``value`` (the same session,
    signed with the current secret key), unless the response sets or clears it itself."""
    setattr(request.state, RENEWED_COOKIE_STATE, value)


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, secure=settings.secure_cookies, samesite="lax"
    )
