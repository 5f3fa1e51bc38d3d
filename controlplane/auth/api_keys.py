"""Who is calling the tenant API: an ``Authorization: Bearer bk_…`` key resolved to a project.

Failures say which (missing, malformed, unknown, revoked, expired) through the error code and
never echo the key. Lookups go through :class:`controlplane.auth.api_key_cache.ApiKeyCache`,
which keeps resolved keys in process memory and drops them the moment any process revokes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from controlplane.auth.keys import generate_key, looks_like_key
from controlplane.auth.scopes import ALLOWED_SCOPES
from controlplane.errors import AuthenticationFailed, PermissionDenied
from controlplane.models import ApiKey, KeyKind, KeyMode, Project

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

    def check_not_expired(self, now: datetime | None = None) -> None:
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
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


async def load_principal(key_hash: str) -> KeyPrincipal:
    """The key with this hash from the database, or 401 (unknown, revoked)."""
    key = await ApiKey.get_or_none(key_hash=key_hash).select_related("project")
    if key is None:
        raise AuthenticationFailed("The API key is not recognised.", code="invalid_api_key")
    if key.revoked_at is not None:
        raise AuthenticationFailed("The API key has been revoked.", code="api_key_revoked")
    return KeyPrincipal(
        key_id=key.id,
        key_hash=key_hash,
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
        display_prefix=issued.display_prefix,
        last_four=issued.last_four,
        expires_at=expires_at,
    )
    return row, issued.plaintext
