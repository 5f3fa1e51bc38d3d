"""The top bar in a real browser: the switcher moves between organizations and projects (it
submits itself), the test/live toggle keeps the page and marks test data, and the switcher
reaches nothing of another tenant's."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from controlplane.models import Membership, Project, Role
from tests.dashboard.conftest import sign_in
from tests.dashboard.test_isolation import sign_in as sign_in_client
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_the_switcher_and_the_mode_toggle_lead_where_they_say(
    page: Page, database: None
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER,))
    globex = await make_tenant("Globex", roles=())
    await Membership.create(
        organization=globex.organization, user=acme.owner.user, role=Role.VIEWER
    )
    second = await Project.create(organization=acme.organization, name="Acme second app")
    await sign_in(page, acme.owner, f"/dashboard/projects/{acme.project.id}/test/devices")
    banner = page.locator(".test-banner")
    await expect(banner).to_contain_text("Test data")

    # Test to live on the same page: the banner goes, the toggle says which is on.
    await page.get_by_role("link", name="Live data").click()
    await page.wait_for_url(f"**/projects/{acme.project.id}/live/devices")
    await expect(banner).to_have_count(0)
    toggle = page.get_by_role("navigation", name="Test or live data")
    await expect(toggle.get_by_role("link", name="Live data")).to_have_attribute(
        "aria-current", "true"
    )
    await expect(page.get_by_role("heading", level=1)).to_contain_text("live data")

    # Another project of the organization, in the mode the page was in.
    switcher = page.get_by_label("Organization or project")
    await switcher.select_option(label="Acme second app")
    await page.wait_for_url(f"**/dashboard/projects/{second.id}/live")
    # Another organization: its projects.
    await switcher.select_option(label="Globex — organization")
    await page.wait_for_url(f"**/dashboard/organizations/{globex.organization.id}/projects")
    await expect(page.get_by_role("link", name="Globex app")).to_be_visible()
    await page.get_by_role("link", name="Globex app").click()
    await expect(banner).to_contain_text("Test data")  # a project opens on test data


async def test_the_switcher_answers_404_for_another_tenants_ids(
    dashboard_url: str, database: None
) -> None:
    me = await make_tenant("Me Co", roles=(Role.OWNER,))
    other = await make_tenant("Other Co", roles=(Role.OWNER,))
    async with httpx.AsyncClient(base_url=dashboard_url) as client:
        await sign_in_client(client, me.owner)
        for to in (f"organization:{other.organization.id}", f"project:{other.project.id}"):
            answer = await client.get("/dashboard/switch", params={"to": to, "mode": "live"})
            assert answer.status_code == 404, to
            assert "Other Co" not in answer.text
        mine = await client.get("/dashboard/switch", params={"to": f"project:{me.project.id}"})
        assert mine.headers["location"] == f"/dashboard/projects/{me.project.id}/test"
