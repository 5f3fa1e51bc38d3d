"""Which scopes exist, and which a key of each kind may hold."""

from __future__ import annotations

from controlplane.models import KeyKind

SECRET_SCOPES: frozenset[str] = frozenset(
    {
        "devices:read",
        "devices:write",
        "pushes:read",
        "pushes:write",
        "credentials:read",
        "credentials:write",
        "usage:read",
        "analytics:write",
        "analytics:read",
        "state:read",
        "state:write",
        "webhooks:read",
        "webhooks:write",
        "realtime:write",
        "users:read",
        "users:write",
        "export",
    }
)
# Publishable keys hold the state scopes too; what they may read and write is narrowed by
# the entries' public flag and the project's prefixes (controlplane/api/state.py).
PUBLISHABLE_SCOPES: frozenset[str] = frozenset(
    {"devices:write", "analytics:write", "state:read", "state:write"}
)

ALLOWED_SCOPES: dict[KeyKind, frozenset[str]] = {
    KeyKind.SECRET: SECRET_SCOPES,
    KeyKind.PUBLISHABLE: PUBLISHABLE_SCOPES,
}
