"""Webhooks in the dashboard: an endpoint created with its secret shown once, a test event sent
and seen in the delivery log, resent, disabled — and a viewer reads without the forms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from playwright.async_api import Browser, Page, expect

from controlplane.models import Membership, Role, WebhookEndpoint
from controlplane.settings import Settings
from tests.dashboard.conftest import browser_page, sign_in
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_person, make_tenant
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.database


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The receiver is on 127.0.0.1: this install allows private networks."""
    return make_settings(webhook_allow_private_networks=True)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    hooks = WebhookReceiver()
    async with serving(hooks.app) as url:
        yield hooks, url


async def test_an_endpoint_is_created_tested_resent_and_disabled_from_the_dashboard(
    page: Page, browser: Browser, dashboard_url: str, settings: Settings,
    receiver: tuple[WebhookReceiver, str], database: None,
) -> None:  # fmt: skip
    hooks, url = receiver
    tenant = await make_tenant("Hooks Co", roles=(Role.OWNER,))
    await sign_in(page, tenant.owner)
    await page.goto(f"/dashboard/projects/{tenant.project.id}/test/webhooks")
    await page.get_by_label("URL").fill(f"{url}/brik")
    await page.get_by_label("push.completed").check()
    await page.get_by_label("billing.plan_changed").check()
    await page.get_by_label("Description").fill("orders")
    await page.get_by_role("button", name="Create endpoint").click()
    secret = (await page.locator("#new-secret").text_content() or "").strip()
    assert secret.startswith("whsec_")
    endpoint = await WebhookEndpoint.get(project=tenant.project)
    assert endpoint.events == ["billing.plan_changed", "push.completed"]

    await page.get_by_role("link", name=f"{url}/brik").click()
    await expect(page.locator("h1")).to_have_text("Webhook endpoint")
    assert secret not in await page.content()  # shown once, on creation
    async with running_worker(settings):
        await page.get_by_role("button", name="Send a test event").click()
        await expect(page.get_by_role("status")).to_contain_text("Test event queued")
        await hooks.wait_for(1)
        deadline = time.monotonic() + 20
        while "succeeded" not in (await page.locator("tbody").text_content() or ""):
            assert time.monotonic() < deadline, "the delivery log never showed the success"
            await asyncio.sleep(0.2)
            await page.reload()
        row = page.get_by_role("row").filter(has_text="webhook.test")
        await expect(row).to_contain_text("HTTP 200")
        await row.get_by_role("button", name="Resend").click()
        await expect(page.get_by_role("status")).to_contain_text("Delivery resent")
        await hooks.wait_for(2)

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Disable").click()
    await expect(page.get_by_role("status")).to_contain_text("Endpoint disabled")
    await endpoint.refresh_from_db()
    assert not endpoint.enabled

    viewer = await make_person("viewer@hooks.example")
    await Membership.create(organization=tenant.organization, user=viewer.user, role=Role.VIEWER)
    async with browser_page(browser, dashboard_url) as viewer_page:
        await sign_in(viewer_page, viewer)
        await viewer_page.goto(f"/dashboard/projects/{tenant.project.id}/test/webhooks")
        await expect(viewer_page.get_by_role("link", name=f"{url}/brik")).to_be_visible()
        await expect(viewer_page.get_by_role("button", name="Create endpoint")).to_have_count(0)
