"""Who is calling the management API: a dashboard session cookie or a personal access token.

Cookie-authenticated requests that change something must come from our own origin: the
cookie is ``SameSite=Lax`` and, on top, an unsafe request whose ``Origin`` (or
``Sec-Fetch-Site``) says another site sent it is refused — the classic CSRF defence.
Bearer tokens are not sent by browsers on their own, so they need no such check. Forms that
*start* a session carry no cookie yet, and need the check all the more
(:func:`refuse_cross_site`): signed into someone else's account by another site's form (login
CSRF), a person would upload their credentials and keys into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from starlette.requests import Request

from controlplane.auth.keys import ACCESS_TOKEN_PREFIX, generate_secret, looks_like_key
from controlplane.auth.peppers import PepperRing, issued_under_a_dropped_key
from controlplane.auth.sessions import SESSION_COOKIE, find_session, renew_session_cookie
from controlplane.errors import AuthenticationFailed, PermissionDenied
from controlplane.models import PersonalAccessToken, User
from controlplane.settings import Settings

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """A signed-in user, and how they signed in (exactly one of the two ids is set)."""

    user: User
    session_id: str | None = None
    access_token_id: str | None = None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def refuse_cross_site(request: Request, settings: Settings) -> None:
    """403 ``cross_site_request`` for an unsafe request another site's page sent."""
    if request.method in _SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    allowed = {_origin(settings.public_base_url), _origin(str(request.base_url))}
    cross_site = request.headers.get("sec-fetch-site") == "cross-site"
    if cross_site or (origin is not None and origin.lower() not in allowed):
        raise PermissionDenied(
            "Cross-site request refused: send it from the dashboard's own origin.",
            code="cross_site_request",
        )


async def _from_access_token(token: str, settings: Settings) -> AdminPrincipal:
    if not looks_like_key(token, ACCESS_TOKEN_PREFIX):
        if looks_like_key(token):
            raise AuthenticationFailed(
                "Project API keys cannot use the management API; "
                "use a personal access token (bk_pat_…) or sign in.",
                code="access_token_required",
            )
        raise AuthenticationFailed(
            "The access token is malformed; personal access tokens look like bk_pat_….",
            code="invalid_access_token",
        )
    peppers = PepperRing.from_settings(settings)
    record = (
        await PersonalAccessToken.filter(token_hash__in=peppers.hashes(token))
        .select_related("user")
        .first()
    )
    if record is None:
        if await issued_under_a_dropped_key(PersonalAccessToken, token, peppers):
            raise AuthenticationFailed(
                "The access token is not recognised: it was issued under a secret key this "
                "server no longer accepts (it was rotated, and the token was not used while the "
                "old one still worked). Create a new token.",
                code="invalid_access_token",
            )
        raise AuthenticationFailed(
            "The access token is not recognised.", code="invalid_access_token"
        )
    if record.revoked_at is not None:
        raise AuthenticationFailed(
            "The access token has been revoked.", code="access_token_revoked"
        )
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise AuthenticationFailed("The access token has expired.", code="access_token_expired")
    await peppers.move_to_current(record, "token_hash", token)
    return AdminPrincipal(user=record.user, access_token_id=record.id)


async def authenticate_admin(request: Request, settings: Settings) -> AdminPrincipal:
    """The caller, or 401 saying what is missing or wrong."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed(
                "Send a personal access token as 'Authorization: Bearer bk_pat_…'.",
                code="invalid_access_token",
            )
        return await _from_access_token(token.strip(), settings)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await find_session(cookie, settings)
        if found is None:
            raise AuthenticationFailed(
                "Your session has ended; sign in again.", code="session_expired"
            )
        refuse_cross_site(request, settings)
        if found.renewed_cookie is not None:
            renew_session_cookie(request, found.renewed_cookie)
        return AdminPrincipal(user=found.session.user, session_id=found.session.id)
    raise AuthenticationFailed(
        "Sign in, or send a personal access token as 'Authorization: Bearer bk_pat_…'.",
        code="not_authenticated",
    )


async def issue_access_token(
    user: User, *, name: str, pepper: str, expires_at: datetime | None = None
) -> tuple[PersonalAccessToken, str]:
    """Store a new personal access token (its hash only); returns it and the plaintext."""
    issued = generate_secret(ACCESS_TOKEN_PREFIX, pepper)
    row = await PersonalAccessToken.create(
        user=user,
        name=name,
        token_hash=issued.key_hash,
        pepper_id=issued.pepper_id,
        display_prefix=issued.display_prefix,
        last_four=issued.last_four,
        expires_at=expires_at,
    )
    return row, issued.plaintext
