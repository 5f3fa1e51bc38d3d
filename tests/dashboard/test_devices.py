"""Devices in the dashboard, in a real browser: search by user id, tag, platform and status; a
device's page (token redacted, tags, other tokens, Live Activities, recent deliveries with
their reason); deleting one. Devices, an activity and a push are made through the API."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from playwright.async_api import Page, expect

from controlplane.models import Delivery, DeliveryStatus, Device, DeviceStatus, Role
from tests.dashboard.conftest import sign_in
from tests.dashboard.test_activities import _call, _order_tracking
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_an_owner_searches_devices_reads_one_and_deletes_it(
    page: Page, api: httpx.AsyncClient, database: None
) -> None:
    tenant = await make_tenant("Fleet Co", roles=(Role.OWNER,))
    ann_id, activity_id = await _order_tracking(api, tenant)  # Ann's iPhone, an activity on it
    await _call(api, tenant, "/v1/devices", {"token": "ab" * 32, "platform": "ios",
                "user_id": "ann", "tags": ["beta", "vip"], "push_to_start_token": "ef" * 32},
                200)  # fmt: skip
    bob = await _call(api, tenant, "/v1/devices", {"token": "bob-token-" + "b" * 40,
                      "platform": "android", "user_id": "bob", "tags": ["beta"]}, 200)  # fmt: skip
    cy = await _call(api, tenant, "/v1/devices", {"token": "cd" * 32, "platform": "ios",
                     "user_id": "cy"}, 200)  # fmt: skip
    await Device.filter(id=cy["id"]).update(
        status=DeviceStatus.INVALID, invalid_reason="Unregistered"
    )
    push = await _call(api, tenant, "/v1/pushes", {"kind": "alert", "alert": {"title": "Hi"},
                       "to": {"user_ids": ["ann"]}}, 202)  # fmt: skip
    await Delivery.filter(push_id=push["id"], device_id=ann_id).update(
        status=DeliveryStatus.FAILED, reason="TopicDisallowed"
    )
    devices = f"/dashboard/projects/{tenant.project.id}/test/devices"
    await sign_in(page, tenant.owner, devices)
    rows = page.get_by_role("row")
    await expect(rows).to_have_count(4)  # the header and three devices (Ann's once)
    for field, value, shown in (("Tag", "beta", ("ann", "bob")), ("User id", "cy", ("cy",))):
        await page.get_by_label(field).fill(value)
        await page.get_by_role("button", name="Search").click()
        await expect(rows).to_have_count(1 + len(shown))
        for user in shown:
            await expect(page.get_by_role("table")).to_contain_text(user)
        await page.get_by_label(field).fill("")
    await page.get_by_label("Platform").select_option("android")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("bob")
    await page.get_by_label("Platform").select_option("")
    await page.get_by_label("Status").select_option("invalid")
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(2)
    await expect(rows.nth(1)).to_contain_text("cy")

    # A device's page: the token redacted, its tags, its activity, its deliveries and reasons.
    await page.goto(f"{devices}/{ann_id}")
    facts = page.locator("dl.facts")
    await expect(facts).to_contain_text("beta, vip")
    await expect(facts).to_contain_text("push-to-start")
    assert "ab" * 32 not in await page.content()
    await expect(page.get_by_role("link", name=activity_id)).to_be_visible()
    delivery = page.get_by_role("row").filter(has_text=push["id"])
    await expect(delivery).to_contain_text("failed")
    await expect(delivery).to_contain_text("TopicDisallowed")

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(f"{devices}/{bob['id']}")
    await page.get_by_role("button", name="Delete device").click()
    await expect(page.get_by_role("status")).to_contain_text("Device deleted")
    await expect(rows).to_have_count(3)
    assert not await Device.filter(id=bob["id"]).exists()
