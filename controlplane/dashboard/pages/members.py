"""An organization's people: members and their roles, invitations, and what each role may do.

Invite by email with a role, change a member's role, remove a member (or leave), resend or
withdraw a pending invitation — each through the members and invitations operations, whose
rules (only owners touch owners, never leave no owner) decide; the page offers only what the
viewer's role allows. Resending is inviting the same address again: the operation withdraws the
earlier invitation, so only the newest link works. The table of what each role may do is drawn
from the permission matrix itself (``controlplane/auth/permissions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from controlplane.api.invitations import Invitation
from controlplane.api.members import Member
from controlplane.api.pagination import Page
from controlplane.auth.permissions import (
    MATRIX,
    PROJECT_DATA_SCOPES,
    Permission,
    can_assign,
)
from controlplane.auth.scopes import SECRET_SCOPES
from controlplane.dashboard.forms import text
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError, InvalidRequest
from controlplane.models import Role

MEMBERS = "/v1/organizations/{organization_id}/members"
MEMBER = MEMBERS + "/{member_id}"
INVITATIONS = "/v1/organizations/{organization_id}/invitations"
INVITATION = INVITATIONS + "/{invitation_id}"
PAGE_SIZE = "50"
NOTICES = {
    "invited": "Invitation sent. The link in the email works once, until it expires.",
    "resent": "Invitation sent again; the earlier link no longer works.",
    "revoked": "Invitation withdrawn; its link no longer works.",
    "role_changed": "Role changed.",
    "removed": "Member removed.",
}

# What each permission lets a person do, in words; which roles hold it comes from MATRIX.
PERMISSION_LABELS: dict[Permission, str] = {
    Permission.ORGANIZATION_READ: "See the organization, its usage and plan",
    Permission.ORGANIZATION_UPDATE: "Rename the organization",
    Permission.ORGANIZATION_DELETE: "Delete the organization",
    Permission.MEMBERS_READ: "See the members",
    Permission.MEMBERS_MANAGE: "Change roles and remove members",
    Permission.INVITATIONS_MANAGE: "Invite people",
    Permission.PROJECTS_READ: "See the projects",
    Permission.PROJECTS_WRITE: "Create, rename and delete projects",
    Permission.API_KEYS_READ: "See API keys",
    Permission.API_KEYS_WRITE: "Create, roll and revoke API keys",
    Permission.CREDENTIALS_WRITE: "Upload and remove APNs and FCM credentials",
    Permission.AUDIT_LOG_READ: "Read the audit log",
    Permission.BILLING_MANAGE: "Change the plan and billing",
}


@dataclass(frozen=True)
class RoleTableRow:
    label: str
    code: str | None
    cells: list[bool | str]  # one per role of ROLES: allowed or not, or what it amounts to


ROLES = tuple(Role)


def _project_data(scopes: frozenset[str]) -> str:
    """A role's project-data scopes in words: "Read devices, pushes; write devices"."""
    if scopes == SECRET_SCOPES:
        return "Everything a secret API key may do"
    if scopes == SECRET_SCOPES - {"export"}:
        return "Everything a secret API key may do but export the whole project"
    reads = sorted(scope.split(":")[0] for scope in scopes if scope.endswith(":read"))
    writes = sorted(scope.split(":")[0] for scope in scopes if scope.endswith(":write"))
    parts = ([f"read {', '.join(reads)}"] if reads else []) + (
        [f"write {', '.join(writes)}"] if writes else []
    )
    return "; ".join(parts).capitalize() or "Nothing"


def role_table() -> list[RoleTableRow]:
    """What each role may do: the permission matrix, then the project data each role reaches."""
    rows = [
        RoleTableRow(
            PERMISSION_LABELS.get(permission, permission.value),
            permission.value,
            [permission in MATRIX[role] for role in ROLES],
        )
        for permission in Permission
    ]
    rows.append(
        RoleTableRow(
            "Project data (devices, pushes, Live Activities, state, credentials)",
            None,
            [_project_data(PROJECT_DATA_SCOPES[role]) for role in ROLES],
        )
    )
    return rows


def _assignable(actor: Role | None, current: Role | None) -> list[Role]:
    """The roles ``actor`` may give someone who is ``current`` now (None: not a member)."""
    if actor is None:
        return []
    return [role for role in ROLES if can_assign(actor, current, role)]


async def _page(view: View, *, error: APIError | None = None, status_code: int = 200,
                error_member_id: str | None = None, **context: Any) -> Response:  # fmt: skip
    organization = {"organization_id": view.organization_id}
    members = await view.gateway.get(
        Page[Member],
        MEMBERS,
        params=organization,
        query={
            "limit": PAGE_SIZE,
            "starting_after": view.request.query_params.get("starting_after", ""),
        },
    )
    invitations: Page[Invitation] | None = None
    if view.frame.can(Permission.INVITATIONS_MANAGE):
        invitations = await view.gateway.get(
            Page[Invitation], INVITATIONS, params=organization,
            query={"status": "pending", "limit": "100"},
        )  # fmt: skip
    if error_member_id not in {member.id for member in members.data}:
        error_member_id = None  # not on this page: the error goes above the list
    actor = view.frame.role
    manages = view.frame.can(Permission.MEMBERS_MANAGE)
    me = view.frame.admin.user.id
    choices = {
        member.id: _assignable(actor, member.role) if manages else [] for member in members.data
    }
    removable = {
        member.id: member.user_id == me
        or (manages and actor is not None and can_assign(actor, member.role, None))
        for member in members.data
    }
    return view.render(
        "members.html",
        status_code=status_code,
        members=members,
        invitations=invitations,
        choices=choices,
        removable=removable,
        me=me,
        invite_roles=_assignable(actor, None),
        roles=ROLES,
        role_table=role_table(),
        error=error,
        error_member_id=error_member_id,
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
        **context,
    )


async def members(view: View) -> Response:
    """The list; a POST invites someone."""
    if view.request.method == "GET":
        return await _page(view)
    form = await view.form()
    body = {"email": text(form, "email") or "", "role": text(form, "role") or ""}
    try:
        await view.gateway.run(
            "POST", INVITATIONS, params={"organization_id": view.organization_id}, body=body
        )
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code, invite=body)
    return view.redirect(view.frame.organization_url("members") + "?notice=invited")


async def member_action(view: View) -> Response:
    """Change one member's role (``action=role``) or remove them (``action=remove``)."""
    form = await view.form()
    member_id = view.param("member_id")
    params = {"organization_id": view.organization_id, "member_id": member_id}
    action = text(form, "action")
    try:
        member = await view.gateway.get(Member, MEMBER, params=params)  # 404 when out of reach
        if action == "role":
            await view.gateway.run("PATCH", MEMBER, params=params,
                                   body={"role": text(form, "role") or ""})  # fmt: skip
            return view.redirect(view.frame.organization_url("members") + "?notice=role_changed")
        if action == "remove":
            await view.gateway.run("DELETE", MEMBER, params=params)
            if member.user_id == view.frame.admin.user.id:  # they left
                return view.redirect("/dashboard/")
            return view.redirect(view.frame.organization_url("members") + "?notice=removed")
        raise InvalidRequest("Unknown action.", param="action")
    except APIError as error:
        return await _page(
            view, error=error, status_code=error.status_code, error_member_id=member_id
        )


async def invitation_action(view: View) -> Response:
    """Send a pending invitation again (``action=resend``) or withdraw it (``action=revoke``)."""
    form = await view.form()
    params = {"organization_id": view.organization_id, "invitation_id": view.param("invitation_id")}
    action = text(form, "action")
    try:
        invitation = await view.gateway.get(Invitation, INVITATION, params=params)
        if action == "resend":
            # Inviting the address again withdraws the earlier invitation: one usable link.
            await view.gateway.run(
                "POST", INVITATIONS, params={"organization_id": view.organization_id},
                body={"email": invitation.email, "role": invitation.role.value},
            )  # fmt: skip
            return view.redirect(view.frame.organization_url("members") + "?notice=resent")
        if action == "revoke":
            await view.gateway.run("DELETE", INVITATION, params=params)
            return view.redirect(view.frame.organization_url("members") + "?notice=revoked")
        raise InvalidRequest("Unknown action.", param="action")
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code)


routes = [
    dashboard_page("/organizations/{organization_id}/members", members, methods=("GET", "POST")),
    dashboard_page(
        "/organizations/{organization_id}/members/{member_id}", member_action, methods=("POST",)
    ),
    dashboard_page(
        "/organizations/{organization_id}/invitations/{invitation_id}",
        invitation_action,
        methods=("POST",),
    ),
]
