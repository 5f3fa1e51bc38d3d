"""Who is calling the tenant API: an ``Authorization: Bearer bk_…`` key resolved to a project.

Failures say which (missing, malformed, unknown, revoked, expired) through the error code and
never echo the key; a key refused because the secret key it was hashed under has since been
rotated out says so. Lookups go through :class:`controlplane.auth.api_key_cache.ApiKeyCache`,
which keeps resolved keys in process memory and drops them the moment any process revokes one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from controlplane.auth.keys import generate_key, looks_like_key
from controlplane.auth.peppers import PepperRing, issued_under_a_dropped_key
from controlplane.auth.scopes import ALLOWED_SCOPES
from controlplane.errors import AuthenticationFailed, PermissionDenied
from controlplane.models import ApiKey, KeyKind, KeyMode, Project

logger = logging.getLogger("brik.api_keys")

API_KEY_PREFIXES = ("bk_sk_", "bk_pk_")


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """The project a request acts for, as far as its API key allows."""

    key_id: str
    key_hash: str
    project_id: str
    organization_id: str
    kind: KeyKind
    mode: KeyMode
    scopes: frozenset[str]
    expires_at: datetime | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(
                f"This API key lacks the '{scope}' scope.", code="missing_scope", param=scope
            )

    def require_secret(self) -> None:
        """403 for a publishable key: it ships inside every copy of an app, so anyone has it."""
        if self.kind is not KeyKind.SECRET:
            raise PermissionDenied(
                "This needs a secret key (bk_sk_…): publishable keys ship inside apps.",
                code="secret_key_required",
            )

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def check_not_expired(self, now: datetime | None = None) -> None:
        if self.expired(now):
            raise AuthenticationFailed("The API key has expired.", code="api_key_expired")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or 401 ``missing_api_key``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "No API key: send it as 'Authorization: Bearer bk_…'.", code="missing_api_key"
        )
    return token.strip()


def check_key_shape(token: str) -> None:
    if not looks_like_key(token, API_KEY_PREFIXES):
        if looks_like_key(token):
            raise AuthenticationFailed(
                "This is not a project API key; the tenant API takes bk_sk_… or bk_pk_… keys.",
                code="invalid_api_key",
            )
        raise AuthenticationFailed(
            "The API key is malformed; Brik keys look like bk_sk_live_….", code="invalid_api_key"
        )


async def load_principal(token: str, peppers: PepperRing) -> KeyPrincipal:
    """The key ``token`` is, from the database, or 401 (unknown, revoked).

    Found through a previous secret key, the key is re-hashed under the current one on the spot
    (``controlplane/auth/peppers.py``): it changes nothing the key may do, so cached entries of
    other processes stay right and need no invalidation.
    """
    key = await ApiKey.filter(key_hash__in=peppers.hashes(token)).select_related("project").first()
    if key is None:
        if await issued_under_a_dropped_key(ApiKey, token, peppers):
            logger.warning(
                "an API key %s…%s was presented that was hashed under a secret key no longer "
                "configured (BRIK_SECRET_KEY rotated); refused",
                token[:15],
                token[-4:],
            )
            raise AuthenticationFailed(
                "The API key is not recognised: it was issued under a secret key this server "
                "no longer accepts (it was rotated, and the key was not used while the old one "
                "still worked). Create a new key.",
                code="invalid_api_key",
            )
        raise AuthenticationFailed("The API key is not recognised.", code="invalid_api_key")
    if key.revoked_at is not None:
        raise AuthenticationFailed("The API key has been revoked.", code="api_key_revoked")
    await peppers.move_to_current(key, "key_hash", token)
    return KeyPrincipal(
        key_id=key.id,
        key_hash=key.key_hash,
        project_id=key.project.id,
        organization_id=key.project.organization_id,  # type: ignore[attr-defined]
        kind=key.kind,
        mode=key.mode,
        scopes=frozenset(key.scopes),
        expires_at=key.expires_at,
    )


async def issue_api_key(
    project: Project,
    *,
    name: str,
    kind: KeyKind,
    mode: KeyMode,
    pepper: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key (its hash only); returns the row and the plaintext to show once.

    ``scopes`` default to everything ``kind`` allows; callers validate narrower lists.
    """
    issued = generate_key(kind, mode, pepper)
    row = await ApiKey.create(
        project=project,
        name=name,
        kind=kind,
        mode=mode,
        scopes=sorted(ALLOWED_SCOPES[kind] if scopes is None else set(scopes)),
        key_hash=issued.key_hash,
        pepper_id=issued.pepper_id,
        display_prefix=issued.display_prefix,
        last_four=issued.last_four,
        expires_at=expires_at,
    )
    return row, issued.plaintext
