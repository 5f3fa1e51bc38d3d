"""Who is calling: an ``Authorization: Bearer bk_…`` key resolved to a project and its scopes.

Failures say which (missing, malformed, unknown, revoked, expired) through the error code,
never echo the key, and cost one indexed lookup by the key's peppered hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from controlplane.auth.keys import hash_key, looks_like_key
from controlplane.errors import AuthenticationFailed, PermissionDenied
from controlplane.models import ApiKey, KeyKind, KeyMode


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """The project a request acts for, as far as its API key allows."""

    key_id: str
    project_id: str
    organization_id: str
    kind: KeyKind
    mode: KeyMode
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(
                f"This API key lacks the '{scope}' scope.", code="missing_scope", param=scope
            )


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or 401 ``missing_api_key``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "No API key: send it as 'Authorization: Bearer bk_…'.", code="missing_api_key"
        )
    return token.strip()


async def authenticate(token: str, pepper: str, now: datetime | None = None) -> KeyPrincipal:
    if not looks_like_key(token):
        raise AuthenticationFailed(
            "The API key is malformed; Brik keys look like bk_sk_live_….", code="invalid_api_key"
        )
    key = await ApiKey.get_or_none(key_hash=hash_key(token, pepper)).select_related("project")
    if key is None:
        raise AuthenticationFailed("The API key is not recognised.", code="invalid_api_key")
    if key.revoked_at is not None:
        raise AuthenticationFailed("The API key has been revoked.", code="api_key_revoked")
    if key.expires_at is not None and key.expires_at <= (now or datetime.now(UTC)):
        raise AuthenticationFailed("The API key has expired.", code="api_key_expired")
    return KeyPrincipal(
        key_id=key.id,
        project_id=key.project.id,
        organization_id=key.project.organization_id,  # type: ignore[attr-defined]
        kind=key.kind,
        mode=key.mode,
        scopes=frozenset(key.scopes),
    )
