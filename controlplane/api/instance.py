"""``/v1/instance``: what the operator of this Brik Cloud installation manages — every
organization and its plan. Superusers only (``brik-cloud bootstrap`` creates one); they reach
every organization, member or not. The same plan change as ``brik-cloud set-plan``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from controlplane import audit
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Call, Operation
from controlplane.billing import set_plan_by_admin
from controlplane.models import Organization, Plan, PlanSource


class InstanceOrganization(BaseModel):
    object: Literal["organization"] = "organization"
    id: str
    name: str
    plan: Plan
    plan_source: PlanSource
    stripe_customer_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Organization) -> InstanceOrganization:
        return cls(
            id=row.id,
            name=row.name,
            plan=row.plan,
            plan_source=row.plan_source,
            stripe_customer_id=row.stripe_customer_id,
            created_at=row.created_at,
        )


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: Literal["free", "pro", "enterprise", "billing"]  # billing: hand it back to Stripe


async def list_instance_organizations(call: Call) -> Page[InstanceOrganization]:
    """Every organization of this installation."""
    return await paginate(Organization.all(), call.query_as(ListQuery), InstanceOrganization.of)


async def set_organization_plan(call: Call) -> InstanceOrganization:
    """Set the plan (it then stays until changed here), or ``billing`` to hand it back."""
    body = call.body_as(PlanChange)
    organization = await Organization.select_for_update().get(id=call.tenant.organization.id)
    plan = None if body.plan == "billing" else Plan(body.plan)
    await set_plan_by_admin(
        organization, plan, call.settings, audit.Actor.of(call.principal), call.origin
    )
    return InstanceOrganization.of(organization)


operations = [
    Operation(
        "GET",
        "/v1/instance/organizations",
        list_instance_organizations,
        "Every organization of this installation (instance administrators)",
        "Instance",
        query=ListQuery,
        response=Page[InstanceOrganization],
        instance_admin=True,
    ),
    Operation(
        "PUT",
        "/v1/instance/organizations/{organization_id}/plan",
        set_organization_plan,
        "Set an organization's plan, or hand it back to billing (instance administrators)",
        "Instance",
        body=PlanChange,
        response=InstanceOrganization,
        instance_admin=True,
    ),
]
