"""``/v1/organizations``: the tenants a signed-in user belongs to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict
from tortoise.transactions import in_transaction

from controlplane import project_deletion
from controlplane.api.fields import Deleted, Name
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.projects import close_channels
from controlplane.api.routing import Call, Operation, forget_cached_keys
from controlplane.auth.permissions import Permission
from controlplane.billing import paying_subscription
from controlplane.errors import InvalidRequest
from controlplane.models import Membership, Plan, Role
from controlplane.models import Organization as OrganizationRow


class Organization(BaseModel):
    object: Literal["organization"] = "organization"
    id: str
    name: str
    plan: Plan
    role: Role | None = None
    created_at: datetime

    @classmethod
    def of(cls, row: OrganizationRow, role: Role | None) -> Organization:
        return cls(id=row.id, name=row.name, plan=row.plan, role=role, created_at=row.created_at)


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class OrganizationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


async def list_organizations(call: Call) -> Page[Organization]:
    roles = {
        membership.organization_id: membership.role  # type: ignore[attr-defined]
        for membership in await Membership.filter(user_id=call.user.id)
    }
    return await paginate(
        OrganizationRow.filter(id__in=list(roles)),
        call.query_as(ListQuery),
        lambda row: Organization.of(row, roles.get(row.id)),
    )


async def create_organization(call: Call) -> Organization:
    body = call.body_as(OrganizationCreate)
    row = await OrganizationRow.create(name=body.name)
    await Membership.create(organization=row, user=call.user, role=Role.OWNER)
    await call.audit(
        "organization.created",
        target_type="organization",
        target_id=row.id,
        organization_id=row.id,
        name=row.name,
    )
    await call.audit(
        "member.added",
        target_type="user",
        target_id=call.user.id,
        organization_id=row.id,
        role=Role.OWNER.value,
    )
    return Organization.of(row, Role.OWNER)


async def retrieve_organization(call: Call) -> Organization:
    return Organization.of(call.tenant.organization, call.tenant.role)


async def update_organization(call: Call) -> Organization:
    body = call.body_as(OrganizationUpdate)
    row = call.tenant.organization
    previous = row.name
    row.name = body.name
    await row.save(update_fields=["name"])
    await call.audit(
        "organization.updated",
        target_type="organization",
        target_id=row.id,
        name=row.name,
        previous_name=previous,
    )
    return Organization.of(row, call.tenant.role)


async def delete_organization(call: Call) -> Deleted:
    """Its projects go as ``DELETE /v1/projects/{id}`` deletes one
    (``controlplane/project_deletion.py``), then the organization with its members."""
    row = call.tenant.organization
    async with in_transaction():
        subscription = await paying_subscription(row, datetime.now(UTC), call.settings)
        if subscription is not None:
            raise InvalidRequest(
                f"This organization still pays for {subscription.plan} (Stripe subscription "
                f"{subscription.id}): cancel it in the Customer Portal first, so that deleting "
                "the organization cannot leave it billing.",
                code="subscription_active",
            )
        await forget_cached_keys(call)  # Redis unreachable: 503, nothing done
        retired = await project_deletion.retire_all(row.id)
        await call.audit(
            "organization.deleted", target_type="organization", target_id=row.id, name=row.name
        )
    await call.run_after_commit()
    for project_id, canceled in retired.items():
        await close_channels(call, project_id)
        await project_deletion.finish(project_id, canceled)
    await row.delete()  # members, invitations, usage and what is left of any project
    return Deleted(object="organization", id=row.id)


ORGANIZATION = "/v1/organizations/{organization_id}"
operations = [
    Operation(
        "GET",
        "/v1/organizations",
        list_organizations,
        "List your organizations",
        "Organizations",
        query=ListQuery,
        response=Page[Organization],
    ),
    Operation(
        "POST",
        "/v1/organizations",
        create_organization,
        "Create an organization (you become its owner)",
        "Organizations",
        body=OrganizationCreate,
        response=Organization,
        status_code=201,
    ),
    Operation(
        "GET",
        ORGANIZATION,
        retrieve_organization,
        "Retrieve an organization",
        "Organizations",
        permission=Permission.ORGANIZATION_READ,
        response=Organization,
    ),
    Operation(
        "PATCH",
        ORGANIZATION,
        update_organization,
        "Rename an organization",
        "Organizations",
        permission=Permission.ORGANIZATION_UPDATE,
        body=OrganizationUpdate,
        response=Organization,
    ),
    Operation(
        "DELETE",
        ORGANIZATION,
        delete_organization,
        "Delete an organization and everything in it",
        "Organizations",
        permission=Permission.ORGANIZATION_DELETE,
        response=Deleted,
        transactional=False,
    ),
]
