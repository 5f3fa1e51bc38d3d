"""``/v1/instance``: what the operator of this Brik Cloud installation manages — every
organization, its plan and this month's pushes against it. Superusers only (``brik-cloud
bootstrap`` creates one); they reach every organization, member or not. The same plan change
as ``brik-cloud set-plan``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from controlplane import audit
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Call, Operation
from controlplane.billing import set_plan_by_admin
from controlplane.models import KeyMode, Organization, Plan, PlanSource, UsagePeriod
from controlplane.plans import limits_for
from controlplane.settings import Settings
from controlplane.usage import period_start


class MonthPushes(BaseModel):
    """Pushes accepted this calendar month (UTC), per mode, and the plan's quota for each."""

    live: int
    test: int
    limit: int | None  # per mode; None: unlimited


class InstanceOrganization(BaseModel):
    object: Literal["organization"] = "organization"
    id: str
    name: str
    plan: Plan
    plan_source: PlanSource
    stripe_customer_id: str | None
    created_at: datetime
    pushes_this_month: MonthPushes

    @classmethod
    def of(cls, row: Organization, settings: Settings) -> InstanceOrganization:
        """The organization, its pushes not yet counted (:func:`count_pushes`)."""
        return cls(
            id=row.id,
            name=row.name,
            plan=row.plan,
            plan_source=row.plan_source,
            stripe_customer_id=row.stripe_customer_id,
            created_at=row.created_at,
            pushes_this_month=MonthPushes(
                live=0, test=0, limit=limits_for(row.plan, settings).pushes_per_month
            ),
        )


async def count_pushes(organizations: Sequence[InstanceOrganization]) -> None:
    """Fill in each organization's pushes this month, by mode, in one query."""
    by_id = {organization.id: organization.pushes_this_month for organization in organizations}
    rows = await UsagePeriod.filter(
        organization_id__in=list(by_id), period_start=period_start(datetime.now(UTC))
    ).values_list("organization_id", "mode", "pushes")
    for organization_id, mode, pushes in rows:
        setattr(by_id[str(organization_id)], KeyMode(mode).value, int(pushes))


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: Literal["free", "pro", "enterprise", "billing"]  # billing: hand it back to Stripe


async def list_instance_organizations(call: Call) -> Page[InstanceOrganization]:
    """Every organization of this installation, with this month's pushes."""
    page = await paginate(
        Organization.all(),
        call.query_as(ListQuery),
        lambda row: InstanceOrganization.of(row, call.settings),
    )
    await count_pushes(page.data)
    return page


async def set_organization_plan(call: Call) -> InstanceOrganization:
    """Set the plan (it then stays until changed here), or ``billing`` to hand it back."""
    body = call.body_as(PlanChange)
    organization = await Organization.select_for_update().get(id=call.tenant.organization.id)
    plan = None if body.plan == "billing" else Plan(body.plan)
    await set_plan_by_admin(
        organization, plan, call.settings, audit.Actor.of(call.principal), call.origin
    )
    changed = InstanceOrganization.of(organization, call.settings)
    await count_pushes([changed])
    return changed


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
