"""Recording sensitive actions in the audit log.

Call :func:`record` inside the same transaction as the change it describes, so the log can
never claim a change that was rolled back nor miss one that was committed. Action names are
``<noun>.<verb in past tense>``; docs/accounts.md lists them all (``AUDITED_ACTIONS``).
Who acted is an :class:`Actor` and where from an :class:`Origin`: the HTTP layer reads both off
the request (``controlplane/api/routing.py``), a worker or the CLI has no origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.auth.admin import AdminPrincipal
from controlplane.auth.api_keys import KeyPrincipal
from controlplane.auth.member_principal import MemberPrincipal
from controlplane.models import AuditEvent, User

AUDITED_ACTIONS: dict[str, str] = {
    "user.login_succeeded": "a user signed in (password or OIDC)",
    "user.login_failed": "a sign-in attempt failed (wrong password, unknown email, locked out)",
    "user.logged_out": "a user signed out",
    "user.password_changed": "a user changed their password (all their sessions end)",
    "user.password_change_failed": "a password change gave a wrong current password, or came "
    "while the account was locked out",
    "user.created": "an account was created (invitation or OIDC sign-up)",
    "access_token.created": "a personal access token was created",
    "access_token.revoked": "a personal access token was revoked",
    "session.revoked": "a user ended one of their sessions (signed a browser out)",
    "organization.created": "an organization was created",
    "organization.updated": "an organization was renamed",
    "organization.deleted": "an organization was deleted with everything in it",
    "member.added": "a user joined an organization",
    "member.role_changed": "a member's role changed",
    "member.removed": "a member left or was removed",
    "invitation.created": "someone was invited",
    "invitation.revoked": "an invitation was withdrawn",
    "invitation.accepted": "an invitation was redeemed",
    "project.created": "a project was created",
    "project.updated": "a project was renamed, or the state prefixes its apps may write changed",
    "project.deleted": "a project was deleted with its keys",
    "api_key.created": "a project API key was created",
    "api_key.updated": "a project API key was renamed",
    "api_key.revoked": "a project API key was revoked",
    "credential.uploaded": "an APNs key or FCM service account was uploaded or replaced",
    "credential.deleted": "an APNs key or FCM service account was removed",
    "organization.plan_changed": "the plan changed (billing, an administrator or a lapsed payment)",
    "webhook_endpoint.created": "a webhook endpoint was created",
    "webhook_endpoint.updated": "a webhook endpoint's URL, events, description or state changed",
    "webhook_endpoint.deleted": "a webhook endpoint was deleted",
    "webhook_endpoint.secret_rotated": "a webhook endpoint's signing secret was rotated",
    "webhook_endpoint.disabled": "a webhook endpoint was disabled after failing for days",
    "end_user.exported": "an end user's data was exported (the user id is kept as a keyed hash)",
    "end_user.erased": "an end user's data was erased (the user id is kept as a keyed hash)",
    "export.created": "a project export was asked for",
    "export.downloaded": "a project export's archive was downloaded",
    "export.deleted": "a project export's archive was deleted before it expired",
}


@dataclass(frozen=True, slots=True)
class Actor:
    type: str
    id: str | None
    email: str | None = None

    @classmethod
    def of(cls, principal: AdminPrincipal | KeyPrincipal | None) -> Actor:
        if isinstance(principal, AdminPrincipal):
            kind = "access_token" if principal.access_token_id else "user"
            return cls(kind, principal.user.id, principal.user.email)
        if isinstance(principal, MemberPrincipal):  # a member, from the dashboard
            return cls("user", principal.user.id, principal.user.email)
        if isinstance(principal, KeyPrincipal):
            return cls("api_key", principal.key_id)
        return cls("anonymous", None)

    @classmethod
    def user(cls, user: User) -> Actor:
        return cls("user", user.id, user.email)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a change was asked from: the client's address and its user agent."""

    ip: str = ""
    user_agent: str = ""


async def record(
    action: str,
    *,
    origin: Origin | None,
    actor: Actor,
    organization_id: str | None,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    if action not in AUDITED_ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to AUDITED_ACTIONS")
    return await AuditEvent.create(
        organization_id=organization_id,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_email=actor.email,
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=origin.ip if origin is not None else "",
        user_agent=origin.user_agent if origin is not None else "",
        details=details or {},
    )
