"""The audit log in a real browser: filters, pages, an event's details; who may read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from controlplane.models import AuditEvent, Role
from tests.dashboard.conftest import screenshot, sign_in
from tests.dashboard.test_isolation import sign_in as sign_in_client
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database


async def record(
    tenant: Tenant, action: str, at: datetime, email: str, **details: object
) -> AuditEvent:
    return await AuditEvent.create(
        organization_id=tenant.organization.id,
        actor_type="user",
        actor_id=next(
            (p.user.id for p in tenant.people.values() if p.user.email == email),
            "usr_" + "a" * 24,  # someone who has left
        ),
        actor_email=email,
        action=action,
        target_type="project",
        target_id=tenant.project.id,
        ip="203.0.113.9",
        user_agent="curl/8.0",
        details=details,
        created_at=at,
    )


async def test_an_owner_filters_the_log_pages_through_it_and_reads_an_event(
    page: Page, database: None, tmp_path: Path
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER, Role.ADMIN))
    owner, admin = acme.owner.user.email, acme.people[Role.ADMIN].user.email
    march_10 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
    for minute in range(26):
        await record(acme, "project.updated", march_10 + timedelta(minutes=minute), admin)
    await record(acme, "member.removed", datetime(2025, 3, 5, tzinfo=UTC), "gone@acme.example")
    revoked = await record(
        acme, "api_key.revoked", datetime(2025, 3, 12, 23, 59, tzinfo=UTC), owner,
        name="Old <script>key</script>", mode="live",
    )  # fmt: skip
    audit_url = f"/dashboard/organizations/{acme.organization.id}/audit"
    await sign_in(page, acme.owner, audit_url)
    await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    rows = page.get_by_role("table", name="Audit events, newest first").locator("tbody tr")
    await expect(rows).to_have_count(25)
    await expect(rows.first).to_contain_text("api_key.revoked")
    await screenshot(page, "audit-log", tmp_path)
    await page.get_by_role("link", name="Older →").click()
    await expect(rows).to_have_count(3)
    await expect(rows.last).to_contain_text("gone@acme.example")
    await page.get_by_role("link", name="← Newest").click()
    await expect(rows).to_have_count(25)

    # By actor: someone who has left still has their events.
    await page.get_by_label("Actor").fill("gone@acme.example")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("member.removed")
    # By action (every action on API keys), the actor cleared.
    await page.get_by_label("Actor").fill("")
    await page.get_by_label("Action").select_option("api_key.*")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("api_key.revoked")
    # By dates, both days included; the next page keeps the filters.
    await page.get_by_label("Action").select_option("")
    await page.get_by_label("From (UTC)").fill("2025-03-10")
    await page.get_by_label("To (UTC, included)").fill("2025-03-10")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(25)
    await page.get_by_role("link", name="Older →").click()
    await expect(rows).to_have_count(1)
    await expect(page.get_by_label("From (UTC)")).to_have_value("2025-03-10")
    await page.get_by_role("link", name="Clear filters").click()
    await page.get_by_label("From (UTC)").fill("2025-03-12")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)  # 23:59 on the 12th is in

    # An event's page: everything recorded, the details as JSON (escaped, never run).
    await page.get_by_role("link", name="api_key.revoked").click()
    await page.wait_for_url(f"**{audit_url}/{revoked.id}")
    await expect(page.get_by_role("heading", name="api_key.revoked")).to_be_visible()
    await expect(page.get_by_text("A project API key was revoked.", exact=True)).to_be_visible()
    facts = page.locator("dl.facts")
    for shown in (owner, "203.0.113.9", "curl/8.0", acme.project.id, "2025-03-12 23:59:00 UTC"):
        await expect(facts).to_contain_text(shown)
    details = page.locator("pre")
    await expect(details).to_contain_text('"name": "Old <script>key</script>"')
    await expect(details).to_contain_text('"mode": "live"')
    await page.get_by_role("link", name="their events").click()
    await expect(rows).to_have_count(1)
    await expect(page.get_by_label("Actor")).to_have_value(acme.owner.user.id)


async def test_a_bad_filter_is_shown_beside_it_and_members_without_the_right_are_refused(
    page: Page, database: None
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER, Role.DEVELOPER))
    other = await make_tenant("Other", roles=(Role.OWNER,))
    elsewhere = await record(other, "project.created", datetime.now(UTC), other.owner.user.email)
    audit_url = f"/dashboard/organizations/{acme.organization.id}/audit"
    await sign_in(page, acme.owner, audit_url)
    await page.get_by_label("Actor").fill("not an email")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_label("Actor")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#actor-error")).to_contain_text("not a valid email")
    # Another organization's event does not exist from here.
    response = await page.goto(f"{audit_url}/{elsewhere.id}")
    assert response is not None
    assert response.status == 404
    await page.get_by_role("button", name="Sign out").click()

    await sign_in(
        page,
        acme.people[Role.DEVELOPER],
        f"/dashboard/organizations/{acme.organization.id}/members",
    )
    await expect(page.get_by_role("link", name="Members")).to_be_visible()
    await expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    response = await page.goto(audit_url)
    assert response is not None
    assert response.status == 403
    await expect(page.get_by_role("alert")).to_contain_text("audit_log:read")


async def test_a_date_out_of_range_is_refused_beside_its_field(
    dashboard_url: str, database: None
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER,))
    audit_url = f"/dashboard/organizations/{acme.organization.id}/audit"
    async with httpx.AsyncClient(base_url=dashboard_url) as me:
        await sign_in_client(me, acme.owner)
        # 9999-12-31 has no day after it to end the range on: that was a 500.
        for field, day in (("to", "9999-12-31"), ("from", "9999-12-31"), ("from", "0001-01-01")):
            answer = await me.get(audit_url, params={field: day})
            assert answer.status_code == 400, (field, day, answer.status_code)
            assert f'id="{field}-error"' in answer.text
            assert f"{field}: a date from 1970-01-01 to 2999-12-31" in answer.text
