"""Usage and billing in the dashboard, in a real browser, with Stripe connected: the fake
Stripe (``workers/fakes/stripe.py``) in front of localstripe serves the hosted Checkout and
portal pages, and its signed webhooks reach the app over HTTP, as Stripe's would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from controlplane.app import create_app
from controlplane.models import (
    KeyMode,
    Organization,
    Plan,
    PlanSource,
    Role,
    Subscription,
    UsageDay,
    UsageMetric,
    UsagePeriod,
)
from controlplane.settings import Settings
from controlplane.usage import period_start
from tests.dashboard.conftest import screenshot, sign_in
from tests.support.servers import bound_socket, serving
from tests.support.stripe import (
    PRO_PRICE_ID,
    STRIPE_SECRET_KEY,
    WEBHOOK_SECRET,
    register_webhook,
)
from tests.support.tenants import Tenant, make_tenant
from workers.fakes.stripe import FakeStripe

pytestmark = pytest.mark.database


@pytest.fixture
async def dashboard_url(
    make_settings: Callable[..., Settings], fake_stripe: FakeStripe, database: None
) -> AsyncIterator[str]:
    """The app with Stripe connected, at the address Stripe sends the browser back to."""
    bound = bound_socket()
    settings = make_settings(
        public_base_url=bound[1],
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake_stripe.base_url,
        stripe_pro_price_ids=[PRO_PRICE_ID],
        plan_free_requests_per_second=50.0,  # the default (the suite's is higher): as shown
    )
    async with serving(create_app(settings), bound) as url:
        await register_webhook(fake_stripe, f"{url}/webhooks/stripe")
        yield url


def billing_path(tenant: Tenant) -> str:
    return f"/dashboard/organizations/{tenant.organization.id}/billing"


async def record_usage(tenant: Tenant, live_pushes_today: int, test_requests_today: int) -> None:
    """This month's counters, as the API and the worker keep them."""
    today = datetime.now(UTC).date()
    organization = tenant.organization
    await UsagePeriod.create(organization=organization, period_start=period_start(
        datetime.now(UTC)), mode=KeyMode.LIVE, pushes=live_pushes_today)  # fmt: skip
    await UsageDay.create(organization=organization, day=today, mode=KeyMode.LIVE,
                          metric=UsageMetric.PUSHES, value=live_pushes_today)  # fmt: skip
    await UsageDay.create(organization=organization, day=today, mode=KeyMode.TEST,
                          metric=UsageMetric.API_REQUESTS, value=test_requests_today)  # fmt: skip


async def test_an_owner_upgrades_through_checkout_and_comes_back_to_pro(
    page: Page, fake_stripe: FakeStripe, tmp_path: Path
) -> None:
    tenant = await make_tenant("Upgrade Co", roles=(Role.OWNER,))
    await record_usage(tenant, live_pushes_today=2_500, test_requests_today=321)
    path = billing_path(tenant)
    await sign_in(page, tenant.owner, path)
    await expect(page.get_by_role("heading", name="Plan: Free")).to_be_visible()
    response = await page.reload()
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "https://checkout.stripe.com" in policy
    assert fake_stripe.base_url in policy

    # This month, as meters and as charts with their numbers behind them.
    meter = page.get_by_role("meter", name="Live pushes")
    await expect(meter).to_have_attribute("value", "2500")
    await expect(meter).to_have_attribute("max", "10000")
    pushes = page.get_by_role("img", name="Pushes per day")
    await expect(pushes).to_be_visible()
    today = datetime.now(UTC).date().isoformat()
    await expect(pushes.locator("rect.bar title")).to_have_text(f"{today} — Live: 2,500")
    requests_chart = page.get_by_role("img", name="API requests per day")
    await expect(requests_chart.locator("rect.bar-test title")).to_have_text(f"{today} — Test: 321")
    await page.get_by_text("API requests per day as a table").click()
    await expect(page.get_by_role("row", name=f"{today} 0 321")).to_be_visible()

    # Changing one's mind on Stripe's page comes back with nothing charged.
    await page.get_by_role("button", name="Upgrade to Pro").click()
    await page.wait_for_url(f"{fake_stripe.base_url}/checkout/*")
    await page.get_by_role("link", name="Cancel and go back").click()
    await page.wait_for_url(f"**{path}?checkout=canceled")
    await expect(page.get_by_role("status")).to_contain_text("nothing was charged")
    await expect(page.get_by_role("heading", name="Plan: Free")).to_be_visible()

    # Paying: Stripe's webhook moves the plan before the browser is sent back.
    await page.get_by_role("button", name="Upgrade to Pro").click()
    await page.wait_for_url(f"{fake_stripe.base_url}/checkout/*")
    await page.get_by_role("button", name="Pay and subscribe").click()
    await page.wait_for_url(f"**{path}?checkout=success")
    await expect(page.get_by_role("status")).to_contain_text("you are on the Pro plan")
    await expect(page.get_by_role("heading", name="Plan: Pro")).to_be_visible()
    await expect(page.get_by_role("meter", name="Live pushes")).to_have_attribute("max", "100000")
    subscription = page.get_by_role("row").filter(has_text="sub_")
    await expect(subscription).to_contain_text("active")
    await expect(page.get_by_role("button", name="Upgrade to Pro")).to_have_count(0)
    stored = await Organization.get(id=tenant.organization.id)
    assert (stored.plan, stored.plan_source) == (Plan.PRO, PlanSource.BILLING)
    await screenshot(page, "billing", tmp_path)

    # The portal, and back.
    await page.get_by_role("button", name="Manage billing").click()
    await page.wait_for_url(f"{fake_stripe.base_url}/portal/*")
    [portal] = fake_stripe.portal_sessions.values()
    assert portal["customer"] == stored.stripe_customer_id
    await page.get_by_role("link", name="Return").click()
    await page.wait_for_url(f"**{path}?checkout=portal")
    await expect(page.get_by_role("status")).to_contain_text("Back from Stripe's billing portal")


async def test_a_viewer_sees_no_billing_buttons_and_the_server_refuses_their_forms(
    page: Page, fake_stripe: FakeStripe
) -> None:
    tenant = await make_tenant("Viewer Co", roles=(Role.OWNER, Role.VIEWER))
    path = billing_path(tenant)
    await sign_in(page, tenant.people[Role.VIEWER], path)
    await expect(page.get_by_role("heading", name="Plan: Free")).to_be_visible()
    await expect(page.get_by_text("Only the organization's owners")).to_be_visible()
    await expect(page.get_by_role("button", name="Upgrade to Pro")).to_have_count(0)
    await expect(page.get_by_role("button", name="Manage billing")).to_have_count(0)

    for action in ("checkout", "portal"):
        refused = await page.request.post(f"{path}/{action}", form={"go": "1"})
        assert refused.status == 403, action
        assert "billing:manage" in await refused.text()
    assert fake_stripe.checkout_sessions == {}
    assert fake_stripe.portal_sessions == {}
    assert (await Organization.get(id=tenant.organization.id)).stripe_customer_id is None


async def test_a_past_due_payment_is_announced_on_every_page_of_the_organization(
    page: Page,
) -> None:
    tenant = await make_tenant("Late Co", roles=(Role.OWNER,))
    other = await make_tenant("Paid Co", roles=())
    await Organization.filter(id=tenant.organization.id).update(
        plan=Plan.PRO, plan_source=PlanSource.BILLING
    )
    since = datetime.now(UTC) - timedelta(days=2)
    await Subscription.create(
        id="sub_late", organization=tenant.organization, customer_id="cus_late",
        status="past_due", price_id=PRO_PRICE_ID, plan=Plan.PRO, past_due_since=since,
    )  # fmt: skip
    grace_end = (since + timedelta(days=7)).strftime("%Y-%m-%d %H:%M")
    await sign_in(page, tenant.owner)  # lands on the project's overview
    banner = page.get_by_role("region", name="Payment overdue")
    await expect(banner).to_contain_text("Pro plan failed")
    await expect(banner).to_contain_text(grace_end)
    for section in ("projects", "billing"):
        await page.goto(f"/dashboard/organizations/{tenant.organization.id}/{section}")
        await expect(banner).to_contain_text(grace_end)
    await expect(page.get_by_role("row").filter(has_text="sub_late")).to_contain_text(
        "lapses to Free"
    )
    await banner.get_by_role("link", name="Update the payment method").click()
    assert page.url.endswith(billing_path(tenant))
    assert other.organization.id not in page.url


async def test_the_billing_page_fits_a_phone(page: Page) -> None:
    tenant = await make_tenant("Phone Co", roles=(Role.OWNER,))
    await record_usage(tenant, live_pushes_today=10**9, test_requests_today=7)
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_in(page, tenant.owner, billing_path(tenant))
    await expect(page.get_by_role("img", name="Pushes per day")).to_be_visible()
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    # Keyboard: the first button in the page's content is the upgrade.
    await page.get_by_role("heading", name="Usage & billing").focus()
    upgrade = page.get_by_role("button", name="Upgrade to Pro")
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await upgrade.evaluate("button => button === document.activeElement"):
            break
    else:
        raise AssertionError("the Upgrade button is not reachable with Tab")
