"""State in the dashboard, in a real browser: keys by prefix with their values, visibility,
expiry and size against the plan; setting, replacing and deleting a key; reserved keys shown
read-only; who may write."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from controlplane.models import Role
from tests.dashboard.conftest import sign_in
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

# Every character a key may hold but letters and digits: namespaces with ':', and '.', '_', '-'.
SPECIAL_KEY = "user:42:theme_v1.dark-mode"
Form = dict[str, str | float | bool]  # a form as Playwright posts it


def _bearer(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.secret_key}"}


async def _put(api: httpx.AsyncClient, tenant: Tenant, key: str, value: Any) -> None:
    answer = await api.put(f"/v1/state/{key}", json={"value": value}, headers=_bearer(tenant))
    assert answer.status_code == 200, answer.text


async def _get(api: httpx.AsyncClient, tenant: Tenant, key: str) -> httpx.Response:
    return await api.get(f"/v1/state/{key}", headers=_bearer(tenant))


async def _widget(api: httpx.AsyncClient, tenant: Tenant) -> None:
    reloaded = await api.post("/v1/widgets/OrderWidget/reload", headers=_bearer(tenant), json={
        "to": {"user_ids": ["nobody"]}, "data": {"orders": 2}})  # fmt: skip
    assert reloaded.status_code == 202, reloaded.text


async def test_an_owner_sets_replaces_and_deletes_keys_and_sees_them_against_the_plan(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Stately Co", roles=(Role.OWNER,))
    await _put(api, tenant, "order:A-1", {"stage": "packed"})
    await _put(api, tenant, "order:A-2", {"lines": ["a long line of an order"] * 40})
    await _widget(api, tenant)
    base = f"/dashboard/projects/{tenant.project.id}/test/state"
    await sign_in(page, tenant.owner, base)

    await expect(page.locator("#storage").locator("..")).to_contain_text(
        "1.1 KB of 1.0 GB (free plan)"
    )
    rows = page.get_by_role("row")
    await expect(rows).to_have_count(4)  # the header and three keys, in key order
    await expect(rows.nth(1)).to_contain_text("order:A-1")
    await expect(rows.nth(1)).to_contain_text('"stage": "packed"')
    await expect(rows.nth(2)).to_contain_text("Truncated")
    widget_row = rows.nth(3)
    await expect(widget_row).to_contain_text("widget:OrderWidget")
    await expect(widget_row).to_contain_text("read-only")
    await expect(widget_row.get_by_role("button")).to_have_count(0)
    await expect(rows.nth(1).get_by_role("button", name="Delete order:A-1")).to_be_visible()
    await page.get_by_label("Key prefix").fill("order:")
    await page.get_by_role("button", name="Show").click()
    await expect(rows).to_have_count(3)
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.set_viewport_size({"width": 1280, "height": 860})

    await page.get_by_label("Key", exact=True).fill(SPECIAL_KEY)
    await page.get_by_label("Value (JSON)").fill('{"color": "blue"}')
    await page.get_by_label("Public").check()
    await page.get_by_label("Expires after (seconds)").fill("3600")
    await page.get_by_role("button", name="Set key").click()
    await expect(page.get_by_role("status").last).to_contain_text("Key created")
    assert unquote(page.url).endswith(f"/state/{SPECIAL_KEY}?notice=created")
    await expect(page.get_by_role("heading", level=1)).to_have_text(SPECIAL_KEY)
    await expect(page.locator("dl.facts")).to_contain_text("in 59 min")
    stored = (await _get(api, tenant, SPECIAL_KEY)).json()
    assert (stored["value"], stored["public"]) == ({"color": "blue"}, True)
    assert stored["expires_at"] is not None

    value = page.get_by_label("Value (JSON)")
    await value.fill("{not json")
    await page.get_by_role("button", name="Replace").click()
    await expect(page.locator("#value-error")).to_contain_text("value: not valid JSON")
    await value.fill('"plain"')
    await page.get_by_label("Public").uncheck()
    await page.get_by_role("button", name="Replace").click()
    await expect(page.get_by_role("status").last).to_contain_text("Saved")
    stored = (await _get(api, tenant, SPECIAL_KEY)).json()
    assert (stored["value"], stored["public"], stored["expires_at"]) == ("plain", False, None)

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)
    await page.get_by_role("button", name="Delete key").click()
    await expect(page.get_by_role("status").last).to_contain_text("Key deleted")
    assert (await _get(api, tenant, SPECIAL_KEY)).status_code == 404

    # Reserved keys: read here, written by Brik only (the server says so to a crafted form).
    await page.goto(f"{base}/widget:OrderWidget")
    await expect(page.locator("pre")).to_contain_text('"orders": 2')
    await expect(page.get_by_text("Read-only here")).to_be_visible()
    await expect(page.get_by_role("button", name="Replace")).to_have_count(0)
    refused = await page.request.post(
        f"{base}/widget:OrderWidget", form={"action": "set", "value": "{}"}
    )
    assert refused.status == 400
    assert "reserved" in await refused.text()


async def test_keys_come_page_by_page_after_the_last_key(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Paged Co", roles=(Role.OWNER,))
    for n in range(51):
        await _put(api, tenant, f"bulk:{n:03}", n)
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test/state")
    rows = page.get_by_role("row")
    await expect(rows).to_have_count(51)
    await expect(rows.last).to_contain_text("bulk:049")
    await page.get_by_role("link", name="Next keys").click()
    await expect(rows).to_have_count(2)
    await expect(rows.last).to_contain_text("bulk:050")


async def test_a_viewer_reads_state_but_cannot_write_it(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Readers Co", roles=(Role.VIEWER,))
    await _put(api, tenant, "order:A-1", {"stage": "packed"})
    base = f"/dashboard/projects/{tenant.project.id}/test/state"
    await sign_in(page, tenant.people[Role.VIEWER], base)
    await expect(page.get_by_role("row").nth(1)).to_contain_text('"stage": "packed"')
    await expect(page.get_by_role("button", name="Delete order:A-1")).to_have_count(0)
    await expect(page.get_by_role("heading", name="Set a key")).to_have_count(0)
    await page.get_by_role("link", name="order:A-1").click()
    await expect(page.get_by_role("button", name="Delete key")).to_have_count(0)
    forms: list[tuple[str, Form]] = [
        (base, {"key": "order:A-1", "value": "1"}),
        (f"{base}/order:A-1", {"action": "set", "value": "1"}),
        (f"{base}/order:A-1", {"action": "delete"}),
    ]
    for url, form in forms:
        refused = await page.request.post(url, form=form)
        assert refused.status == 403, (url, form)
        assert "state:write" in await refused.text()
    assert (await _get(api, tenant, "order:A-1")).json()["value"] == {"stage": "packed"}
