"""``/v1/organizations/{organization_id}/members``: who belongs to an organization, as what."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from controlplane.api.fields import Deleted
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Call, Operation
from controlplane.auth.permissions import Permission, can_assign
from controlplane.errors import InvalidRequest, PermissionDenied
from controlplane.models import Membership as MembershipRow
from controlplane.models import Organization, Role
from controlplane.tenancy import Tenant, missing


class Member(BaseModel):
    object: Literal["member"] = "member"
    id: str
    user_id: str
    email: str
    name: str
    role: Role
    created_at: datetime

    @classmethod
    def of(cls, row: MembershipRow) -> Member:
        return cls(
            id=row.id,
            user_id=row.user.id,
            email=row.user.email,
            name=row.user.name,
            role=row.role,
            created_at=row.created_at,
        )


class MemberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role


async def _check_change(call: Call, row: MembershipRow, new: Role | None) -> None:
    """Role rules beyond the matrix: who may touch whom, and never leave no owner.

    Two owners demoting (or removing) each other at once must not both see "one more owner",
    and the second must not act with a role the first just took away. So every role change
    first locks the organization row (one lock order: organization, then memberships), then
    reads the actor's role, the target's and the owner count afresh under that lock; the
    second request waits for the first to commit and decides on what it left.
    """
    organization_id = call.tenant.organization.id
    await Organization.select_for_update().filter(id=organization_id).first()
    roles = dict(
        await MembershipRow.filter(
            organization_id=organization_id, user_id__in={call.user.id, row.user.id}
        ).values_list("user_id", "role")
    )
    if call.user.id not in roles:  # the caller was removed meanwhile
        raise missing("organization", organization_id, "organization_id")
    if row.user.id not in roles:
        raise missing("member", row.id, "member_id")
    actor, row.role = Role(roles[call.user.id]), Role(roles[row.user.id])
    leaving = new is None and row.user.id == call.user.id
    if not leaving:
        Tenant(call.tenant.organization, None, actor).require(Permission.MEMBERS_MANAGE)
    if not leaving and not can_assign(actor, row.role, new):
        raise PermissionDenied(
            "Only owners can change, remove or appoint owners.", code="insufficient_role"
        )
    if row.role is Role.OWNER and new is not Role.OWNER:
        owners = await call.tenant.query(MembershipRow).filter(role=Role.OWNER).count()
        if owners <= 1:
            raise InvalidRequest(
                "An organization needs at least one owner: appoint another owner first.",
                code="last_owner",
                param="role" if new else None,
            )


async def _member(call: Call) -> MembershipRow:
    row = call.row(MembershipRow, "member_id")
    await row.fetch_related("user")
    return row


async def list_members(call: Call) -> Page[Member]:
    query = call.tenant.query(MembershipRow).prefetch_related("user")
    return await paginate(query, call.query_as(ListQuery), Member.of)


async def retrieve_member(call: Call) -> Member:
    return Member.of(await _member(call))


async def update_member(call: Call) -> Member:
    row = await _member(call)
    new = call.body_as(MemberUpdate).role
    if new is row.role:
        return Member.of(row)
    await _check_change(call, row, new)
    previous = row.role
    row.role = new
    await row.save(update_fields=["role"])
    await call.audit(
        "member.role_changed",
        target_type="user",
        target_id=row.user.id,
        role=new.value,
        previous_role=previous.value,
    )
    return Member.of(row)


async def remove_member(call: Call) -> Deleted:
    row = await _member(call)
    if row.user.id != call.user.id:
        call.tenant.require(Permission.MEMBERS_MANAGE)
    await _check_change(call, row, None)
    await row.delete()
    await call.audit(
        "member.removed", target_type="user", target_id=row.user.id, role=row.role.value
    )
    return Deleted(object="member", id=row.id)


MEMBERS = "/v1/organizations/{organization_id}/members"
MEMBER = MEMBERS + "/{member_id}"
operations = [
    Operation(
        "GET",
        MEMBERS,
        list_members,
        "List the members of an organization",
        "Members",
        permission=Permission.MEMBERS_READ,
        query=ListQuery,
        response=Page[Member],
    ),
    Operation(
        "GET",
        MEMBER,
        retrieve_member,
        "Retrieve a member",
        "Members",
        permission=Permission.MEMBERS_READ,
        response=Member,
    ),
    Operation(
        "PATCH",
        MEMBER,
        update_member,
        "Change a member's role",
        "Members",
        permission=Permission.MEMBERS_MANAGE,
        body=MemberUpdate,
        response=Member,
    ),
    Operation(
        "DELETE",
        MEMBER,
        remove_member,
        "Remove a member (any member may remove themselves)",
        "Members",
        permission=Permission.MEMBERS_READ,
        response=Deleted,
    ),
]
