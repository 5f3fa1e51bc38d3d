"""Live Activities in the dashboard, in a real browser: the list and its filters, one activity
(state, redacted tokens, deliveries), updating and ending it, and who may.

Devices and activities are made through the API with the tenant's test secret key, as a
tenant's server and app would; no worker runs, so deliveries stay queued.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import Dialog, Page, expect

from controlplane.models import Push, Role
from tests.dashboard.conftest import sign_in
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

ACTIVITY_TOKEN = "cd" * 32
Form = dict[str, str | float | bool]  # a form as Playwright posts it


async def _call(api: httpx.AsyncClient, tenant: Tenant, path: str, body: dict[str, Any],
                status: int) -> dict[str, Any]:  # fmt: skip
    answer = await api.post(
        path, json=body, headers={"Authorization": f"Bearer {tenant.secret_key}"}
    )
    assert answer.status_code == status, answer.text
    return dict(answer.json())


async def _read(api: httpx.AsyncClient, tenant: Tenant, activity_id: str) -> dict[str, Any]:
    answer = await api.get(
        f"/v1/activities/{activity_id}",
        headers={"Authorization": f"Bearer {tenant.secret_key}"},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def _order_tracking(api: httpx.AsyncClient, tenant: Tenant) -> tuple[str, str]:
    """An iPhone of Ann's carrying an active OrderTracking activity (the app registered it)."""
    device = await _call(api, tenant, "/v1/devices", {
        "token": "ab" * 32, "platform": "ios", "user_id": "ann",
        "push_to_start_token": "ef" * 32}, 200)  # fmt: skip
    activity = await _call(api, tenant, "/v1/activities/register", {
        "device_id": device["id"], "token": ACTIVITY_TOKEN, "activity_type": "OrderTracking",
        "attributes": {"order": "A-1042"}, "content_state": {"eta": 30}}, 201)  # fmt: skip
    return device["id"], activity["id"]


def _accept_dialogs(page: Page) -> None:
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def test_an_owner_filters_updates_once_and_ends_an_activity(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Lively Co", roles=(Role.OWNER,))
    device_id, order_id = await _order_tracking(api, tenant)
    match = await _call(api, tenant, "/v1/activities", {
        "activity_type": "MatchScore", "content_state": {"score": "0-0"},
        "to": {"user_ids": ["bob"]}}, 201)  # fmt: skip
    base = f"/dashboard/projects/{tenant.project.id}/test/activities"
    await sign_in(page, tenant.owner, base)

    rows = page.get_by_role("row")
    await expect(rows).to_have_count(3)  # the header and both activities
    await page.get_by_label("Status").select_option("active")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("OrderTracking")
    await page.goto(f"{base}?activity_type=9+lives")
    await expect(page.locator(".field-error")).to_contain_text("activity_type")
    await page.goto(f"{base}?user_id=bob")
    await expect(rows.nth(1)).to_contain_text("MatchScore")

    await page.goto(base)
    await page.get_by_role("link", name=order_id).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("OrderTracking")
    await expect(page.locator("#content-state + pre")).to_contain_text('"eta": 30')
    await expect(page.get_by_role("link", name=device_id)).to_be_visible()
    await expect(page.get_by_role("cell", name="…cdcd")).to_be_visible()
    assert ACTIVITY_TOKEN not in await page.content()  # never a whole push token
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await page.set_viewport_size({"width": 1280, "height": 860})

    await page.locator("#update-content-state").fill('{"eta": 12}')
    await page.get_by_label("Title").fill("Almost there")
    await page.get_by_label("Stale date").fill("2030-01-31T09:00:00")
    await page.get_by_label("Relevance score").fill("50")
    await page.get_by_label("10 — at once", exact=False).check()
    form = page.locator("form[action$='/update']")
    sent_once: Form = {
        name: await form.locator(f"[name={name}]").input_value()
        for name in ("idempotency_key", "content_state", "alert_title", "stale_date",
                     "relevance_score")
    }  # fmt: skip
    await page.get_by_role("button", name="Send update").click()
    notice = page.locator(".notice")
    await expect(notice).to_contain_text("Update accepted")
    await expect(notice).to_contain_text("It goes to 1 device.")
    await expect(page.locator("#content-state + pre")).to_contain_text('"eta": 12')
    detail = await _read(api, tenant, order_id)
    assert detail["content_state"] == {"eta": 12}
    assert (detail["stale_date"], detail["relevance_score"]) == ("2030-01-31T09:00:00Z", 50.0)
    # The same form sent again (a double click, a reload) replays the first answer.
    again = await page.request.post(
        f"{base}/{order_id}/update", form={**sent_once, "priority": "10"}
    )
    assert again.ok
    assert "Update accepted" in await again.text()
    assert await Push.filter(activity_id=order_id).count() == 1

    _accept_dialogs(page)
    await page.get_by_label("Final content state (JSON)").fill('{"eta": 0}')
    await page.get_by_label("At once", exact=True).check()
    await page.get_by_role("button", name="End activity").click()
    await expect(notice).to_contain_text("End accepted")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("dismissed")
    await expect(page.get_by_role("button", name="Send update")).to_have_count(0)
    detail = await _read(api, tenant, order_id)
    assert (detail["status"], detail["content_state"]) == ("dismissed", {"eta": 0})
    assert len(detail["last_deliveries"]) == 2  # the update and the end, still queued
    await page.get_by_role("link", name=f"activity:{order_id}").click()  # read as state
    await expect(page.locator("pre")).to_contain_text('"eta": 0')
    await expect(page.get_by_text("Read-only here")).to_be_visible()

    # Ended through the API while the page was open: the form shows the API's 409.
    await page.goto(f"{base}/{match['id']}")
    await _call(api, tenant, f"/v1/activities/{match['id']}/end", {}, 200)
    await page.locator("#update-content-state").fill('{"score": "1-0"}')
    await page.get_by_role("button", name="Send update").click()
    await expect(page.get_by_role("alert")).to_contain_text("is ended: it cannot be updated")
    bad_json = await page.request.post(f"{base}/{order_id}/update", form={"content_state": "{"})
    assert bad_json.status == 400


async def test_activities_come_page_by_page(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Busy Co", roles=(Role.OWNER,))
    started = [
        await _call(api, tenant, "/v1/activities", {
            "activity_type": "Timer", "content_state": {"n": n}, "to": {"user_ids": ["nobody"]},
        }, 201)
        for n in range(26)
    ]  # fmt: skip
    base = f"/dashboard/projects/{tenant.project.id}/test/activities"
    await sign_in(page, tenant.owner, f"{base}?activity_type=Timer")
    rows = page.get_by_role("row")
    await expect(rows).to_have_count(26)  # the header and 25, newest first
    await page.get_by_role("link", name="Older").click()
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text(started[0]["id"])
    assert "activity_type=Timer" in page.url  # the filter stays on
    await page.get_by_role("link", name="Back to the newest").click()
    await expect(rows).to_have_count(26)


async def test_a_viewer_reads_activities_but_has_no_forms_and_the_server_refuses_them(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Watchers Co", roles=(Role.VIEWER,))
    _, order_id = await _order_tracking(api, tenant)
    url = f"/dashboard/projects/{tenant.project.id}/test/activities/{order_id}"
    await sign_in(page, tenant.people[Role.VIEWER], url)
    await expect(page.locator("#content-state + pre")).to_contain_text('"eta": 30')
    await expect(page.get_by_role("button", name="Send update")).to_have_count(0)
    await expect(page.get_by_role("button", name="End activity")).to_have_count(0)
    forms: list[tuple[str, Form]] = [("update", {"content_state": '{"eta": 1}'}), ("end", {})]
    for action, form in forms:
        refused = await page.request.post(f"{url}/{action}", form=form)
        assert refused.status == 403, action
        assert "pushes:write" in await refused.text()
    detail = await _read(api, tenant, order_id)
    assert (detail["status"], detail["content_state"]) == ("active", {"eta": 30})
