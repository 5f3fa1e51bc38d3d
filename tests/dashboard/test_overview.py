"""The overview's analytics, in a real browser: the last 7 days as charts (impressions and
clicks per day, events by platform) with the numbers behind them, click-through per widget,
push open rate and error rate; the raw events downloaded as CSV; an empty project says how
events get there."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import httpx
import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from controlplane.analytics.loading import load_pending
from controlplane.models import Delivery, DeliveryStatus, Device, DeviceStatus, Role
from controlplane.settings import Settings
from tests.dashboard.conftest import sign_in
from tests.dashboard.test_activities import _order_tracking
from tests.support.analytics import event, event_buffer, impression
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_the_overview_charts_the_last_week_and_exports_the_events(
    page: Page, api: httpx.AsyncClient, settings: Settings, database: None
) -> None:
    tenant = await make_tenant("Charted Co", roles=(Role.VIEWER,))
    events = [
        *[impression("Score", platform="ios") for _ in range(6)],
        *[impression("Score", platform="android") for _ in range(2)],
        *[event("widget.click", widget="Score", action="open", platform="ios") for _ in range(2)],
        event("error", error_message="<script>alert('x')</script>", platform="ios"),
    ]
    sent = await api.post("/v1/events", json={"events": events},
                          headers={"Authorization": f"Bearer {tenant.secret_key}"})  # fmt: skip
    assert sent.json()["accepted"] == len(events)
    redis = Redis.from_url(settings.redis_url)
    await load_pending(event_buffer(redis), "dashboard-test", claim_idle_seconds=60)
    await redis.aclose()

    overview = f"/dashboard/projects/{tenant.project.id}/test"
    await sign_in(page, tenant.people[Role.VIEWER], overview)  # viewers read analytics
    await expect(page.get_by_role("heading", name="Analytics, last 7 days")).to_be_visible()
    await expect(page.locator("#m-ctr").locator("..")).to_contain_text("25.0 %")
    await expect(page.locator("#m-errors").locator("..")).to_contain_text("1 errors of 11 events")
    days = page.get_by_role("img", name="Widget impressions and clicks per day")
    await expect(days).to_be_visible()
    await expect(days.locator(".bars rect.bar")).to_have_count(1)  # today's impressions
    await expect(days.locator(".bars rect.bar-alt")).to_have_count(1)  # today's clicks
    platforms = page.get_by_role("img", name="Events by platform")
    await expect(platforms.locator("title").first).to_contain_text("Events by platform")
    await expect(platforms).to_contain_text("ios")
    widgets = page.get_by_role("table", name="Widgets, most impressions first")
    await expect(widgets.get_by_role("row", name="Score 8 2 25.0 %")).to_be_visible()

    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download every event as CSV").click()
    download = await download_info.value
    path = await download.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert len(rows) == len(events)
    assert {row["name"] for row in rows} == {"widget.impression", "widget.click", "error"}


async def test_a_project_without_events_says_how_they_get_there(page: Page, database: None) -> None:
    tenant = await make_tenant("Quiet Co", roles=(Role.OWNER,))
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test")
    await expect(page.get_by_text("No analytics event in the last 7 days")).to_be_visible()
    chart = page.get_by_role("img", name="Widget impressions and clicks per day")
    await expect(chart).to_have_count(0)


async def test_the_overview_counts_the_projects_health_in_its_mode(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Healthy Co", roles=(Role.OWNER,))
    headers = {"Authorization": f"Bearer {tenant.secret_key}"}
    await _order_tracking(api, tenant)  # Ann's iPhone with an open Live Activity
    bob = await api.post("/v1/devices", headers=headers,
                         json={"token": "bob-" + "b" * 40, "platform": "android"})  # fmt: skip
    await Device.filter(id=bob.json()["id"]).update(status=DeviceStatus.INVALID)
    pushes = [
        (await api.post("/v1/pushes", headers=headers, json={
            "kind": "alert", "alert": {"title": "Hi"}, "to": {"user_ids": ["ann"]}})).json()["id"]
        for _ in range(2)
    ]  # fmt: skip
    await Delivery.filter(push_id=pushes[0]).update(
        status=DeliveryStatus.FAILED, reason="TopicDisallowed", completed_at=datetime.now(UTC)
    )
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test")
    for card, shown in (("m-today", "2"), ("m-month", "2"), ("m-rate", "0.0 %"),
                        ("m-invalid", "1"), ("m-activities", "1"), ("m-queue", "1")):  # fmt: skip
        await expect(page.locator(f"#{card}").locator("..").locator(".value")).to_have_text(shown)
    meter = page.get_by_role("meter")
    await expect(meter).to_have_attribute("value", "2")  # deliveries against the plan's quota
    errors = page.get_by_role("row").filter(has_text=pushes[0])
    await expect(errors).to_contain_text("TopicDisallowed")
    # Live data is another count.
    await page.get_by_role("link", name="Live data").click()
    await expect(page.locator("#m-today").locator("..").locator(".value")).to_have_text("0")
