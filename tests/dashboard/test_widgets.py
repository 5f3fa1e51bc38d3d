"""Widgets in the dashboard, in a real browser: the widget data stored, and reloading a kind
on users, devices or tags with new data — once, however often the form is sent."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from controlplane.models import Push, Role
from tests.dashboard.conftest import sign_in
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database
Form = dict[str, str | float | bool]  # a form as Playwright posts it


def _bearer(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.secret_key}"}


async def _android(api: httpx.AsyncClient, tenant: Tenant, user_id: str) -> str:
    device = {"token": f"fcm-{user_id}-" + "x" * 40, "platform": "android", "user_id": user_id}
    registered = await api.post("/v1/devices", headers=_bearer(tenant), json=device)
    assert registered.status_code == 200, registered.text
    return str(registered.json()["id"])


async def test_an_owner_reloads_a_widget_kind_with_new_data_once(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Widgety Co", roles=(Role.OWNER,))
    await _android(api, tenant, "ann")
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test/widgets")
    await expect(page.get_by_text("No widget data yet")).to_be_visible()
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.set_viewport_size({"width": 1280, "height": 860})

    await page.get_by_label("Kind").fill("OrderWidget")
    await page.get_by_label("Data (JSON object)").fill("[1, 2]")
    await page.get_by_label("User ids").fill("ann")
    await page.get_by_role("button", name="Reload widgets").click()
    await expect(page.locator("#data-error")).to_be_visible()  # an object, says the API
    await expect(page.get_by_label("User ids")).to_have_value("ann")  # what was typed stays

    await page.get_by_label("Data (JSON object)").fill('{"orders": 3}')
    await page.get_by_label("Tags").fill("nobody-has-it")
    sent_once: Form = {
        name: await page.locator(f"form [name={name}]").input_value()
        for name in ("idempotency_key", "kind", "user_ids", "tags", "data")
    }
    await page.get_by_role("button", name="Reload widgets").click()
    notice = page.locator(".notice")
    await expect(notice).to_contain_text("Reload accepted. It goes to 1 device.")
    await expect(page.get_by_role("row").nth(1)).to_contain_text('"orders": 3')
    stored = await api.get("/v1/state/widget:OrderWidget", headers=_bearer(tenant))
    assert stored.json()["value"] == {"orders": 3}
    again = await page.request.post(page.url.split("?")[0], form=sent_once)
    assert again.ok
    assert "Reload accepted" in await again.text()
    assert await Push.filter(project_id=tenant.project.id).count() == 1

    await page.get_by_role("link", name="Reload OrderWidget").click()
    await expect(page.get_by_label("Kind")).to_have_value("OrderWidget")
    await page.get_by_label("Device ids").fill("not-an-id")
    await page.get_by_role("button", name="Reload widgets").click()
    await expect(page.locator("#to-error")).to_contain_text("device_ids")
    await page.get_by_label("Device ids").fill("")
    await page.get_by_label("Tags").fill("nobody-has-it")
    await page.get_by_role("button", name="Reload widgets").click()
    await expect(notice).to_contain_text("It goes to 0 devices.")
    await expect(notice).to_contain_text("No device can receive it now.")


async def test_a_viewer_sees_widget_data_but_cannot_reload(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Glance Co", roles=(Role.VIEWER,))
    reloaded = await api.post("/v1/widgets/Score/reload", headers=_bearer(tenant), json={
        "to": {"user_ids": ["ann"]}, "data": {"home": 1}})  # fmt: skip
    assert reloaded.status_code == 202, reloaded.text
    url = f"/dashboard/projects/{tenant.project.id}/test/widgets"
    await sign_in(page, tenant.people[Role.VIEWER], url)
    await expect(page.get_by_role("row").nth(1)).to_contain_text('"home": 1')
    await expect(page.get_by_role("button", name="Reload widgets")).to_have_count(0)
    refused = await page.request.post(url, form={"kind": "Score", "user_ids": "ann"})
    assert refused.status == 403
    assert "pushes:write" in await refused.text()
