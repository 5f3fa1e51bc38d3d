"""The operator's page (``/dashboard/instance``), in a real browser: every organization with
its plan and this month's pushes; setting a plan. Nobody but a superuser gets anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect

from controlplane.models import (
    AuditEvent,
    KeyMode,
    Organization,
    Plan,
    PlanSource,
    Role,
    UsagePeriod,
    User,
)
from controlplane.usage import period_start
from tests.dashboard.conftest import sign_in
from tests.support.tenants import make_person, make_tenant

pytestmark = pytest.mark.database


async def test_an_operator_sees_every_organization_and_sets_a_plan(page: Page) -> None:
    acme = await make_tenant("Acme Instance", roles=(Role.OWNER,))
    await make_tenant("Globex Instance", roles=(Role.OWNER,))
    await UsagePeriod.create(organization=acme.organization, mode=KeyMode.LIVE, pushes=7_500,
                             period_start=period_start(datetime.now(UTC)))  # fmt: skip
    operator = await make_person("ops@instance.example")  # a member of neither
    await User.filter(id=operator.user.id).update(is_superuser=True)

    await sign_in(page, operator)
    await page.get_by_role("link", name="Instance", exact=True).click()
    await expect(page.get_by_role("heading", name="Instance")).to_be_visible()
    acme_row = page.get_by_role("row").filter(has_text="Acme Instance")
    await expect(acme_row).to_contain_text("7,500 of 10,000")
    await expect(acme_row.get_by_role("meter").first).to_have_attribute("value", "7500")
    await expect(page.get_by_role("row").filter(has_text="Globex Instance")).to_contain_text("Free")

    await page.get_by_label("Plan for Acme Instance").select_option("enterprise")
    await page.get_by_role("button", name="Set the plan of Acme Instance").click()
    await expect(page.get_by_role("status")).to_contain_text("Plan changed")
    await expect(acme_row).to_contain_text("Enterprise")
    await expect(acme_row).to_contain_text("set by an administrator")
    await expect(acme_row).to_contain_text("7,500 of unlimited")
    stored = await Organization.get(id=acme.organization.id)
    assert (stored.plan, stored.plan_source) == (Plan.ENTERPRISE, PlanSource.ADMIN)
    event = await AuditEvent.get(
        organization_id=acme.organization.id, action="organization.plan_changed"
    )
    assert event.actor_id == operator.user.id

    # Handing it back to billing: nothing pays, so Free.
    await page.get_by_label("Plan for Acme Instance").select_option("billing")
    await page.get_by_role("button", name="Set the plan of Acme Instance").click()
    await expect(acme_row).to_contain_text("paid through billing")
    assert (await Organization.get(id=acme.organization.id)).plan == Plan.FREE


async def test_only_superusers_reach_the_instance_page(page: Page) -> None:
    acme = await make_tenant("Acme Owners", roles=(Role.OWNER,))
    await sign_in(page, acme.owner)
    await expect(page.get_by_role("link", name="Instance", exact=True)).to_have_count(0)

    response = await page.goto("/dashboard/instance")
    assert response is not None
    assert response.status == 403
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("instance_admin_required")

    refused = await page.request.post(
        "/dashboard/instance",
        form={"organization_id": acme.organization.id, "plan": "enterprise"},
    )
    assert refused.status == 403
    stored = await Organization.get(id=acme.organization.id)
    assert (stored.plan, stored.plan_source) == (Plan.FREE, PlanSource.DEFAULT)
