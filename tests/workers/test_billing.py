"""Overage reported to Stripe's meters by the worker's billing cron: each push past the Pro
quota billed exactly once, through retries and outages (counted by the fake Stripe)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest

from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.billing import StripeConnection
from controlplane.models import KeyKind, KeyMode, MeterReport, Organization, Plan, UsagePeriod
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import new_signing_key
from tests.support.processes import free_port
from tests.support.servers import serving
from tests.support.stripe import PRO_PRICE_ID, STRIPE_SECRET_KEY, WEBHOOK_SECRET, stripe_post
from tests.support.tenants import Tenant, make_tenant
from workers.fakes.stripe import FakeStripe
from workers.tasks.billing import run_billing_chores

pytestmark = pytest.mark.database

METER = "brik_push_overage"
QUOTA = 5


@pytest.fixture
def overage_settings(make_settings: Callable[..., Settings], fake_stripe: FakeStripe) -> Settings:
    return make_settings(
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake_stripe.base_url,
        stripe_pro_price_ids=[PRO_PRICE_ID],
        plan_pro_pushes_per_month=QUOTA,
        plan_pro_overage=True,
    )


@pytest.fixture
async def api(overage_settings: Settings, database: None) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(create_app(overage_settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


@pytest.fixture
async def stripe_connection(overage_settings: Settings) -> AsyncIterator[StripeConnection]:
    connection = StripeConnection.open(overage_settings)
    assert connection is not None
    yield connection
    await connection.close()


async def pro_customer(fake: FakeStripe) -> tuple[Tenant, str]:
    """An organization on Pro through billing, with its Stripe customer."""
    tenant = await make_tenant("Acme")
    customer = await stripe_post(fake, "/v1/customers", email="owner@acme.example")
    await Organization.filter(id=tenant.organization.id).update(
        plan=Plan.PRO, stripe_customer_id=customer["id"]
    )
    return tenant, str(customer["id"])


async def send(api: httpx.AsyncClient, key: str, recipients: int, first: int = 0) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    ids = []
    for number in range(first, first + recipients):
        device = await api.post("/v1/devices", json={"token": f"{number:064x}", "platform": "ios"},
                                headers=headers)  # fmt: skip
        assert device.status_code == 200, device.text
        ids.append(device.json()["id"])
    response = await api.post(
        "/v1/pushes",
        json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"device_ids": ids}},
        headers=headers,
    )
    return response.status_code


async def live_key(api: httpx.AsyncClient, tenant: Tenant) -> str:
    """A live secret key for ``tenant``, with the APNs credential live sends need."""
    _, secret = await issue_api_key(
        tenant.project, name="live", kind=KeyKind.SECRET, mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY
    )
    signing_key = new_signing_key()
    uploaded = await api.put("/v1/credentials/apns", json={
        "key": signing_key.pem, "key_id": signing_key.key_id, "team_id": signing_key.team_id,
        "topic": "com.example.app", "environment": "sandbox",
    }, headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    return secret


async def test_overage_past_the_pro_quota_is_metered_once_and_only_in_live_mode(
    api: httpx.AsyncClient,
    overage_settings: Settings,
    stripe_connection: StripeConnection,
    fake_stripe: FakeStripe,
) -> None:
    acme, customer = await pro_customer(fake_stripe)
    key = await live_key(api, acme)
    assert await send(api, key, 8) == 202  # 3 past the quota: accepted, billed as overage
    assert await send(api, acme.secret_key, 8) == 429  # test mode is never billed: refused

    now = datetime.now(UTC)
    chores = await run_billing_chores(overage_settings, stripe_connection, now)
    assert (chores["recorded"], chores["sent"]) == (1, 1)
    assert fake_stripe.metered(customer, METER) == 3
    assert await run_billing_chores(overage_settings, stripe_connection, now) == {
        "lapsed": 0, "recorded": 0, "sent": 0,
    }  # fmt: skip
    assert fake_stripe.metered(customer, METER) == 3

    assert await send(api, key, 2, first=100) == 202
    await run_billing_chores(overage_settings, stripe_connection, datetime.now(UTC))
    assert fake_stripe.metered(customer, METER) == 5
    reports = await MeterReport.filter(organization_id=acme.organization.id).order_by("id")
    assert [report.value for report in reports] == [3, 2]
    assert len({report.identifier for report in reports}) == 2
    [event] = [e for e in fake_stripe.meter_events if e["identifier"] == reports[0].identifier]
    assert event["payload"] == {"stripe_customer_id": customer, "value": "3"}
    period = await UsagePeriod.get(organization_id=acme.organization.id, mode=KeyMode.LIVE)
    assert (period.pushes, period.overage_reported) == (10, 5)


async def test_a_report_resent_after_a_crash_is_counted_once(
    api: httpx.AsyncClient,
    overage_settings: Settings,
    stripe_connection: StripeConnection,
    fake_stripe: FakeStripe,
) -> None:
    acme, customer = await pro_customer(fake_stripe)
    assert await send(api, await live_key(api, acme), 9) == 202
    await run_billing_chores(overage_settings, stripe_connection, datetime.now(UTC))
    # The worker died after Stripe accepted the event but before it marked the report sent.
    await MeterReport.filter(organization_id=acme.organization.id).update(sent_at=None)
    chores = await run_billing_chores(overage_settings, stripe_connection, datetime.now(UTC))
    assert (chores["recorded"], chores["sent"]) == (0, 1)
    assert fake_stripe.duplicate_meter_events == 1
    assert fake_stripe.metered(customer, METER) == 4


async def test_reports_wait_out_a_stripe_outage(
    api: httpx.AsyncClient,
    overage_settings: Settings,
    stripe_connection: StripeConnection,
    fake_stripe: FakeStripe,
) -> None:
    acme, customer = await pro_customer(fake_stripe)
    assert await send(api, await live_key(api, acme), 7) == 202
    unreachable = overage_settings.model_copy(
        update={"stripe_api_base": f"http://127.0.0.1:{free_port()}"}
    )
    down = StripeConnection.open(unreachable)
    assert down is not None
    try:
        chores = await run_billing_chores(unreachable, down, datetime.now(UTC))
    finally:
        await down.close()
    assert (chores["recorded"], chores["sent"]) == (1, 0)
    assert fake_stripe.metered(customer, METER) == 0
    [pending] = await MeterReport.filter(organization_id=acme.organization.id)
    assert pending.sent_at is None

    chores = await run_billing_chores(overage_settings, stripe_connection, datetime.now(UTC))
    assert (chores["recorded"], chores["sent"]) == (0, 1)
    assert fake_stripe.metered(customer, METER) == 2


async def test_nothing_is_metered_without_overage_or_off_pro(
    api: httpx.AsyncClient,
    overage_settings: Settings,
    stripe_connection: StripeConnection,
    fake_stripe: FakeStripe,
) -> None:
    acme, _ = await pro_customer(fake_stripe)
    assert await send(api, await live_key(api, acme), 8) == 202
    no_overage = overage_settings.model_copy(update={"plan_pro_overage": False})
    assert (await run_billing_chores(no_overage, stripe_connection, datetime.now(UTC)))[
        "recorded"
    ] == 0
    await Organization.filter(id=acme.organization.id).update(plan=Plan.ENTERPRISE)
    assert (await run_billing_chores(overage_settings, stripe_connection, datetime.now(UTC)))[
        "recorded"
    ] == 0
    assert fake_stripe.meter_events == []
