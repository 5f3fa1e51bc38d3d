"""The permission matrix: which organization role may do what. The one place it is decided.

Operations name the permission they need (``controlplane/api/*.py``); the router checks it
against the caller's role in the organization the request is about. The role table in
docs/accounts.md is checked against :data:`MATRIX` by a test, so the two cannot drift apart.

Two rules sit beside the matrix because they depend on the member being changed, not only on
the caller: :func:`can_assign` (admins manage everyone but owners; only owners make owners)
and the last owner of an organization can be neither removed nor demoted.
"""

from __future__ import annotations

from enum import StrEnum

from controlplane.auth.scopes import SECRET_SCOPES
from controlplane.models import Role


class Permission(StrEnum):
    ORGANIZATION_READ = "organization:read"
    ORGANIZATION_UPDATE = "organization:update"
    ORGANIZATION_DELETE = "organization:delete"
    MEMBERS_READ = "members:read"
    MEMBERS_MANAGE = "members:manage"
    INVITATIONS_MANAGE = "invitations:manage"
    PROJECTS_READ = "projects:read"
    PROJECTS_WRITE = "projects:write"
    API_KEYS_READ = "api_keys:read"
    API_KEYS_WRITE = "api_keys:write"
    CREDENTIALS_WRITE = "credentials:write"
    AUDIT_LOG_READ = "audit_log:read"
    BILLING_MANAGE = "billing:manage"


_VIEWER = frozenset(
    {Permission.ORGANIZATION_READ, Permission.MEMBERS_READ, Permission.PROJECTS_READ}
)
_DEVELOPER = _VIEWER | {
    Permission.API_KEYS_READ,
    Permission.API_KEYS_WRITE,
    Permission.CREDENTIALS_WRITE,
}
_ADMIN = _DEVELOPER | {
    Permission.ORGANIZATION_UPDATE,
    Permission.MEMBERS_MANAGE,
    Permission.INVITATIONS_MANAGE,
    Permission.PROJECTS_WRITE,
    Permission.AUDIT_LOG_READ,
}
_OWNER = _ADMIN | {Permission.ORGANIZATION_DELETE, Permission.BILLING_MANAGE}

MATRIX: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(_OWNER),
    Role.ADMIN: frozenset(_ADMIN),
    Role.DEVELOPER: frozenset(_DEVELOPER),
    Role.VIEWER: _VIEWER,
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in MATRIX[role]


def can_assign(actor: Role, current: Role | None, new: Role | None) -> bool:
    """May ``actor`` move a member from ``current`` to ``new`` (``None``: not a member)?

    Owners may do anything. Admins may add, change and remove admins, developers and viewers,
    but never touch an owner nor create one. Nobody else manages members.
    """
    if actor is Role.OWNER:
        return True
    if actor is Role.ADMIN:
        return Role.OWNER not in (current, new)
    return False


# What a member may do to a project's own data (devices, pushes, activities, state,
# credentials) from the dashboard, as the scopes of the API key their role amounts to. The
# tenant API's operations check scopes, so the dashboard acting for a member is checked by the
# very same code (controlplane/auth/member_principal.py). Viewers read; developers and above
# do everything a secret key may.
_READ_SCOPES = frozenset(
    {"devices:read", "pushes:read", "credentials:read", "usage:read", "state:read",
     "analytics:read", "webhooks:read"}
)  # fmt: skip
# A whole project's export (every device token of it) is the owners' alone.
_WITHOUT_EXPORT = SECRET_SCOPES - {"export"}
PROJECT_DATA_SCOPES: dict[Role, frozenset[str]] = {
    Role.VIEWER: _READ_SCOPES,
    Role.DEVELOPER: _WITHOUT_EXPORT,
    Role.ADMIN: _WITHOUT_EXPORT,
    Role.OWNER: SECRET_SCOPES,
}
