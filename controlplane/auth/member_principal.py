"""A signed-in member acting on a project's data from the dashboard.

The tenant API (devices, pushes, activities, state, credentials) is reached with project API
keys and checks their scopes. The dashboard reaches the same operations for a member as a
:class:`MemberPrincipal`: a key principal for the project and the mode the member chose, whose
scopes are those their role amounts to (``PROJECT_DATA_SCOPES`` in
``controlplane/auth/permissions.py``). So one set of checks decides, and the audit log names
the person, not a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.auth.admin import AdminPrincipal
from controlplane.auth.api_keys import KeyPrincipal
from controlplane.auth.permissions import PROJECT_DATA_SCOPES
from controlplane.errors import NotFound
from controlplane.models import KeyKind, KeyMode, Membership, Project, Role, User
from controlplane.models.ids import is_well_formed_id


@dataclass(frozen=True, slots=True)
class MemberPrincipal(KeyPrincipal):
    """The project data a member reaches: their role's scopes, in one mode."""

    user: User = field(kw_only=True)
    role: Role = field(kw_only=True)
    session_id: str | None = field(kw_only=True, default=None)


async def acting_member(admin: AdminPrincipal, project_id: str, mode: KeyMode) -> MemberPrincipal:
    """``admin`` acting on ``project_id`` in ``mode``; 404 unless they are a member of its
    organization (the same answer as for a project that does not exist)."""
    membership = None
    if is_well_formed_id(project_id):
        project = await Project.get_or_none(id=project_id)
        if project is not None:
            membership = await Membership.get_or_none(
                organization_id=project.organization_id,  # type: ignore[attr-defined]
                user_id=admin.user.id,
            )
    if membership is None:
        raise NotFound(f"No such project: '{project_id[:64]}'", param="project_id")
    return MemberPrincipal(
        key_id=f"member:{admin.user.id}",
        key_hash="",
        project_id=project_id,
        organization_id=membership.organization_id,  # type: ignore[attr-defined]
        kind=KeyKind.SECRET,
        mode=mode,
        scopes=PROJECT_DATA_SCOPES[membership.role],
        user=admin.user,
        role=membership.role,
        session_id=admin.session_id,
    )
