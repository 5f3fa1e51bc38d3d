"""Billing end to end: Brik's API, the real ``stripe`` library, localstripe (behind the fake for
Checkout, the Portal and meters) and signed webhooks back to Brik over real HTTP."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from controlplane.app import create_app
from controlplane.billing import lapse_past_due
from controlplane.models import (
    AuditEvent,
    Organization,
    Plan,
    PlanSource,
    StripeEvent,
    Subscription,
)
from controlplane.settings import Settings
from tests.support.processes import brik_cloud_command, clean_environment
from tests.support.servers import serving
from tests.support.stripe import (
    AUTH,
    PRO_PRICE_ID,
    PRO_YEARLY_PRICE_ID,
    STRIPE_SECRET_KEY,
    WEBHOOK_SECRET,
    eventually,
    register_webhook,
    stripe_delete,
    stripe_get,
    stripe_post,
)
from tests.support.tenants import Tenant, make_tenant
from workers.fakes.stripe import DECLINING_CARD, FakeStripe

pytestmark = pytest.mark.database

ALERT = {"kind": "alert", "alert": {"title": "Order shipped"}}


@dataclass
class Brik:
    """The API served with Stripe connected, and the fake Stripe behind it."""

    http: httpx.AsyncClient
    stripe: FakeStripe
    settings: Settings

    async def billing(self, tenant: Tenant) -> dict[str, Any]:
        response = await self.http.get(
            f"/v1/organizations/{tenant.organization.id}/billing", headers=tenant.owner.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def plan(self, tenant: Tenant) -> str:
        return str((await self.billing(tenant))["plan"])

    async def checkout(self, tenant: Tenant) -> httpx.Response:
        return await self.http.post(
            f"/v1/organizations/{tenant.organization.id}/billing/checkout_sessions",
            headers=tenant.owner.headers,
        )

    async def pay_checkout(self, session_id: str, card: str | None = None) -> dict[str, Any]:
        """The customer fills in the Checkout page and pays."""
        async with httpx.AsyncClient(base_url=self.stripe.base_url, headers=AUTH) as http:
            response = await http.post(
                f"/_fake/checkout/sessions/{session_id}/complete",
                data={"card": card} if card else {},
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def upgrade(self, tenant: Tenant) -> str:
        """Checkout, pay, and wait for Stripe's webhooks to move the plan; the subscription id."""
        response = await self.checkout(tenant)
        assert response.status_code == 201, response.text
        session = await self.pay_checkout(response.json()["id"])
        assert await eventually(lambda: self._plan_is(tenant, "pro")), "plan never became pro"
        return str(session["subscription"])

    async def _plan_is(self, tenant: Tenant, plan: str) -> bool:
        return await self.plan(tenant) == plan

    async def wait_for_plan(self, tenant: Tenant, plan: str) -> bool:
        return bool(await eventually(lambda: self._plan_is(tenant, plan)))

    async def send(self, tenant: Tenant, devices: int) -> httpx.Response:
        tokens = [f"{tenant.organization.id}-{n}".encode().hex().ljust(64, "0")[:64]
                  for n in range(devices)]  # fmt: skip
        ids = []
        for token in tokens:
            registered = await self.http.post(
                "/v1/devices", json={"token": token, "platform": "ios"},
                headers={"Authorization": f"Bearer {tenant.secret_key}"},
            )  # fmt: skip
            assert registered.status_code == 200, registered.text
            ids.append(registered.json()["id"])
        return await self.http.post(
            "/v1/pushes",
            json={**ALERT, "to": {"device_ids": ids}},
            headers={"Authorization": f"Bearer {tenant.secret_key}"},
        )


def billing_settings(make_settings: Callable[..., Settings], fake: FakeStripe, **extra: Any) -> (
    Settings
):  # fmt: skip
    return make_settings(
        stripe_secret_key=STRIPE_SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=fake.base_url,
        stripe_pro_price_ids=[PRO_PRICE_ID, PRO_YEARLY_PRICE_ID],
        **extra,
    )


@pytest.fixture
async def brik(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    fake_stripe: FakeStripe,
    database: None,
) -> AsyncIterator[Brik]:
    """Served with Stripe connected; ``@pytest.mark.settings(...)`` adds settings."""
    marker = request.node.get_closest_marker("settings")
    settings = billing_settings(
        make_settings, fake_stripe, plan_free_pushes_per_month=2, plan_pro_pushes_per_month=6,
        **(marker.kwargs if marker else {}),
    )  # fmt: skip
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        await register_webhook(fake_stripe, f"{url}/webhooks/stripe")
        yield Brik(http, fake_stripe, settings)


async def test_upgrade_raises_the_quota_and_cancel_brings_it_back_down(brik: Brik) -> None:
    acme = await make_tenant("Acme")
    refused = await brik.send(acme, 3)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "quota_exceeded"

    checkout = await brik.checkout(acme)
    assert checkout.status_code == 201, checkout.text
    assert checkout.json()["object"] == "checkout_session"
    assert checkout.json()["url"].startswith(brik.stripe.base_url)
    assert await brik.plan(acme) == "free"  # nothing changes until Stripe confirms payment
    session = await brik.pay_checkout(checkout.json()["id"])
    assert await brik.wait_for_plan(acme, "pro")

    state = await brik.billing(acme)
    assert state["plan_source"] == "billing"
    [subscription] = state["subscriptions"]
    assert subscription["id"] == session["subscription"]
    assert subscription["status"] == "active"
    assert subscription["plan"] == "pro"
    assert subscription["price_id"] == PRO_PRICE_ID
    assert subscription["current_period_end"] is not None
    accepted = await brik.send(acme, 3)
    assert accepted.status_code == 202, accepted.text
    usage = (await brik.http.get(f"/v1/organizations/{acme.organization.id}/usage",
                                 headers=acme.owner.headers)).json()  # fmt: skip
    assert (usage["plan"], usage["test"]["pushes"]["limit"]) == ("pro", 6)

    portal = await brik.http.post(
        f"/v1/organizations/{acme.organization.id}/billing/portal_sessions",
        headers=acme.owner.headers,
    )
    assert portal.status_code == 201, portal.text
    assert portal.json()["url"].startswith(brik.stripe.base_url)
    customer = state["stripe_customer_id"]
    assert brik.stripe.portal_sessions[portal.json()["id"]]["customer"] == customer

    # In the portal the owner cancels at the end of the period: still Pro until then.
    updated = await stripe_post(brik.stripe, f"/v1/subscriptions/{subscription['id']}",
                                cancel_at_period_end="true")  # fmt: skip
    await brik.stripe.send_event("customer.subscription.updated", updated)
    assert await eventually(lambda: _subscription_field(brik, acme, "cancel_at_period_end")), (
        "cancel_at_period_end never mirrored"
    )
    assert await brik.plan(acme) == "pro"

    # The period ends: Stripe deletes the subscription and says so.
    await stripe_delete(brik.stripe, f"/v1/subscriptions/{subscription['id']}")
    assert await brik.wait_for_plan(acme, "free")
    [ended] = (await brik.billing(acme))["subscriptions"]
    assert ended["status"] == "canceled"
    again = await brik.send(acme, 1)
    assert again.status_code == 429
    assert again.json()["error"]["type"] == "quota_exceeded"

    changes = await AuditEvent.filter(
        organization_id=acme.organization.id, action="organization.plan_changed"
    ).order_by("created_at")
    assert [(e.details["previous_plan"], e.details["plan"], e.actor_type) for e in changes] == [
        ("free", "pro", "billing"),
        ("pro", "free", "billing"),
    ]


async def _subscription_is(brik: Brik, tenant: Tenant, status: str) -> bool:
    return bool(await _subscription_field(brik, tenant, "status") == status)


async def _subscription_field(brik: Brik, tenant: Tenant, name: str) -> Any:
    subscriptions = (await brik.billing(tenant))["subscriptions"]
    return subscriptions[0][name] if subscriptions else None


@pytest.mark.settings(billing_past_due_grace_seconds=3)
async def test_a_failed_renewal_keeps_pro_through_the_grace_period_then_lapses(
    brik: Brik,
) -> None:
    acme = await make_tenant("Acme")
    subscription_id = await brik.upgrade(acme)
    customer = (await brik.billing(acme))["stripe_customer_id"]

    # The card on file starts declining; the renewal invoice fails.
    method = await stripe_post(
        brik.stripe, "/v1/payment_methods", type="card", **{"card[number]": DECLINING_CARD,
        "card[exp_month]": 12, "card[exp_year]": 2040, "card[cvc]": 123},
    )  # fmt: skip
    await stripe_post(brik.stripe, f"/v1/payment_methods/{method['id']}/attach", customer=customer)
    await stripe_post(brik.stripe, f"/v1/customers/{customer}",
                      **{"invoice_settings[default_payment_method]": method["id"]})  # fmt: skip
    # The owner switches to yearly billing (still Pro): Stripe invoices at once, and the
    # payment fails.
    await stripe_post(brik.stripe, f"/v1/subscriptions/{subscription_id}",
                      **{"items[0][plan]": PRO_YEARLY_PRICE_ID})  # fmt: skip

    assert await eventually(lambda: _subscription_field(brik, acme, "past_due_since"))
    state = await brik.billing(acme)
    assert state["subscriptions"][0]["status"] == "past_due"
    assert state["plan"] == "pro"  # grace period
    grace_ends = datetime.fromisoformat(state["subscriptions"][0]["grace_period_ends_at"])

    assert await lapse_past_due(brik.settings, datetime.now(UTC)) == 0
    assert await brik.plan(acme) == "pro"
    await asyncio.sleep(max(0.0, (grace_ends - datetime.now(UTC)).total_seconds()) + 0.1)
    assert await lapse_past_due(brik.settings, datetime.now(UTC)) == 1  # the worker's cron
    assert await brik.plan(acme) == "free"
    assert await lapse_past_due(brik.settings, datetime.now(UTC)) == 0
    assert (await brik.send(acme, 3)).status_code == 429


async def test_each_event_is_acted_on_once_and_a_late_event_cannot_roll_back(
    brik: Brik,
) -> None:
    acme = await make_tenant("Acme")
    subscription_id = await brik.upgrade(acme)
    created = (await Subscription.get(id=subscription_id)).status
    assert created == "active"

    # Stripe delivers the same event twice (a retry after a timeout, say).
    subscription = await stripe_get(brik.stripe, f"/v1/subscriptions/{subscription_id}")
    event_id = await brik.stripe.send_event("customer.subscription.updated", subscription)
    payload, signature = _signed_event(event_id, "customer.subscription.updated", subscription)
    replay = await brik.http.post(
        "/webhooks/stripe", content=payload, headers={"stripe-signature": signature}
    )
    assert replay.status_code == 200
    assert replay.json() == {"received": True, "duplicate": True}
    # Counted by its own id: a late webhook from the upgrade may land meanwhile.
    assert await StripeEvent.filter(id=event_id).count() == 1

    # The subscription ends; then an old "created" event, saying active, arrives late.
    await stripe_delete(brik.stripe, f"/v1/subscriptions/{subscription_id}")
    assert await brik.wait_for_plan(acme, "free")
    late = {**subscription, "status": "active"}
    await brik.stripe.send_event("customer.subscription.created", late)
    assert (await Subscription.get(id=subscription_id)).status == "canceled"
    assert await brik.plan(acme) == "free"
    changes = await AuditEvent.filter(
        organization_id=acme.organization.id, action="organization.plan_changed"
    ).count()
    assert changes == 2


def _signed_event(
    event_id: str, kind: str, data_object: dict[str, Any], *, at: int | None = None,
    secret: str = WEBHOOK_SECRET,
) -> tuple[bytes, str]:  # fmt: skip
    import json

    from workers.fakes.stripe import sign

    created = at or int(datetime.now(UTC).timestamp())
    event = {"id": event_id, "object": "event", "type": kind, "created": created,
             "data": {"object": data_object}}  # fmt: skip
    payload = json.dumps(event).encode()
    return payload, sign(payload, secret, at)


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [
        ("wrong secret", "invalid_signature"),
        ("stale", "invalid_signature"),
        ("tampered", "invalid_signature"),
        ("no header", "invalid_signature"),
        ("not json", "invalid_payload"),
    ],
)
async def test_a_webhook_that_does_not_verify_is_refused_and_changes_nothing(
    brik: Brik, case: str, expected_code: str
) -> None:
    acme = await make_tenant("Acme")
    await brik.checkout(acme)  # gives the organization a Stripe customer
    customer = (await Organization.get(id=acme.organization.id)).stripe_customer_id
    forged = {"id": "sub_forged", "object": "subscription", "customer": customer,
              "status": "active", "items": {"data": [{"price": {"id": PRO_PRICE_ID}}]}}  # fmt: skip
    payload, signature = _signed_event("evt_forged", "customer.subscription.created", forged,
                                       secret="whsec_not_ours" if case == "wrong secret"
                                       else WEBHOOK_SECRET,
                                       at=int(datetime.now(UTC).timestamp()) - 600
                                       if case == "stale" else None)  # fmt: skip
    headers = {"stripe-signature": signature}
    if case == "tampered":
        payload = payload.replace(b'"active"', b'"trialing"')
    if case == "no header":
        headers = {}
    if case == "not json":
        payload = b"not json at all"
        headers = {"stripe-signature": _signed_raw(payload)}
    response = await brik.http.post("/webhooks/stripe", content=payload, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == expected_code
    assert not await StripeEvent.filter(id="evt_forged").exists()
    assert await Subscription.all().count() == 0
    assert await brik.plan(acme) == "free"


def _signed_raw(payload: bytes) -> str:
    from workers.fakes.stripe import sign

    return sign(payload, WEBHOOK_SECRET)


def _event_body(**fields: Any) -> bytes:
    import json

    event = {"id": "evt_odd", "object": "event", "type": "invoice.paid",
             "created": int(datetime.now(UTC).timestamp()), "data": {"object": {}}}  # fmt: skip
    return json.dumps({**event, **fields}).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"id": "evt_odd", "type": "invoice.paid"}]',
        b'"evt_odd"',
        _event_body(id="evt_" + "x" * 5000),
        _event_body(id="evt_\u0000odd"),
        _event_body(id=42),
        _event_body(type="invoice." + "x" * 5000),
        _event_body(data=[1, 2]),
        _event_body(data={"object": "sub_1"}),
        _event_body(type="customer.subscription.updated", data={"object": {"id": "sub_/../x"}}),
        _event_body(data={"object": {"depth": [[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]] * 5}}).replace(
            b"[]", b"[" * 5000 + b"]" * 5000
        ),
        _event_body().replace(b"{}", b'{"amount": NaN}'),
    ],
    ids=["array", "string", "long id", "NUL in id", "numeric id", "long type", "data array",
         "object not an object", "subscription not an id", "nested 5000 deep", "NaN"],
)  # fmt: skip
async def test_a_correctly_signed_event_of_the_wrong_shape_is_a_400(
    make_settings: Callable[..., Settings], database: None, payload: bytes
) -> None:
    # Refused before Stripe would be asked anything: the API base answers nothing.
    settings = make_settings(stripe_secret_key=STRIPE_SECRET_KEY,
                             stripe_webhook_secret=WEBHOOK_SECRET,
                             stripe_api_base="http://127.0.0.1:9")  # fmt: skip
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/webhooks/stripe", content=payload,
                                   headers={"stripe-signature": _signed_raw(payload)})  # fmt: skip
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_payload"
    assert await StripeEvent.all().count() == 0


async def test_an_event_for_a_subscription_that_is_not_ours_is_acknowledged_and_ignored(
    brik: Brik,
) -> None:
    stranger = await stripe_post(brik.stripe, "/v1/customers", email="someone@else.example")
    subscription = await stripe_post(
        brik.stripe, "/v1/subscriptions", customer=stranger["id"],
        **{"items[0][plan]": PRO_PRICE_ID, "trial_period_days": 7},
    )  # fmt: skip
    await brik.stripe.send_event("customer.subscription.updated", subscription)
    assert await eventually(lambda: _event_count(), within=5)
    assert await Subscription.all().count() == 0
    # One Stripe does not know at all (deleted from the account, say): acknowledged too.
    unknown = {"id": "sub_doesnotexist", "object": "subscription"}
    payload, signature = _signed_event("evt_unknown_sub", "customer.subscription.deleted", unknown)
    answer = await brik.http.post("/webhooks/stripe", content=payload,
                                  headers={"stripe-signature": signature})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert await StripeEvent.filter(id="evt_unknown_sub").exists()
    assert await Subscription.all().count() == 0


async def _event_count() -> int:
    return await StripeEvent.all().count()


async def test_checkout_is_refused_while_subscribed_or_when_an_admin_set_the_plan(
    brik: Brik,
) -> None:
    acme = await make_tenant("Acme")
    await brik.upgrade(acme)
    again = await brik.checkout(acme)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "already_subscribed"

    globex = await make_tenant("Globex")
    await Organization.filter(id=globex.organization.id).update(
        plan=Plan.ENTERPRISE, plan_source=PlanSource.ADMIN
    )
    managed = await brik.checkout(globex)
    assert managed.status_code == 400
    assert managed.json()["error"]["code"] == "plan_managed_by_admin"
    assert (await Organization.get(id=globex.organization.id)).stripe_customer_id is None


async def test_one_stripe_customer_per_organization_however_often_checkout_starts(
    brik: Brik,
) -> None:
    acme = await make_tenant("Acme")
    first, second = await brik.checkout(acme), await brik.checkout(acme)
    assert first.status_code == second.status_code == 201
    sessions = [brik.stripe.checkout_sessions[r.json()["id"]] for r in (first, second)]
    customer = (await Organization.get(id=acme.organization.id)).stripe_customer_id
    assert customer is not None
    assert {session["customer"] for session in sessions} == {customer}
    stored = await stripe_get(brik.stripe, f"/v1/customers/{customer}")
    assert stored["metadata"] == {"organization_id": acme.organization.id}
    assert sessions[0]["client_reference_id"] == acme.organization.id
    assert sessions[0]["line_items"][0]["price"] == PRO_PRICE_ID


async def test_only_owners_manage_billing(brik: Brik) -> None:
    from controlplane.models import Role

    acme = await make_tenant("Acme")
    for role in (Role.ADMIN, Role.DEVELOPER, Role.VIEWER):
        for path in ("checkout_sessions", "portal_sessions"):
            response = await brik.http.post(
                f"/v1/organizations/{acme.organization.id}/billing/{path}",
                headers=acme.people[role].headers,
            )
            assert response.status_code == 403, (role, path, response.text)
    viewer = await brik.http.get(f"/v1/organizations/{acme.organization.id}/billing",
                                 headers=acme.people[Role.VIEWER].headers)  # fmt: skip
    assert viewer.status_code == 200
    assert (await Organization.get(id=acme.organization.id)).stripe_customer_id is None


def set_plan(
    settings: Settings, organization_id: str, plan: str
) -> subprocess.CompletedProcess[str]:
    """``brik-cloud set-plan`` as an operator runs it."""
    return subprocess.run(
        [*brik_cloud_command(), "set-plan", organization_id, plan],
        env=clean_environment(BRIK_DATABASE_URL=settings.database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_an_admin_plan_wins_over_billing_until_handed_back(brik: Brik) -> None:
    acme = await make_tenant("Acme")
    subscription_id = await brik.upgrade(acme)

    result = set_plan(brik.settings, acme.organization.id, "enterprise")
    assert result.returncode == 0, result.stderr
    assert "enterprise" in result.stdout
    state = await brik.billing(acme)
    assert (state["plan"], state["plan_source"]) == ("enterprise", "admin")

    # Billing events no longer move the plan...
    await stripe_delete(brik.stripe, f"/v1/subscriptions/{subscription_id}")
    assert await eventually(lambda: _subscription_is(brik, acme, "canceled"))
    assert await brik.plan(acme) == "enterprise"
    # ...until the operator hands it back: the subscription has ended, so Free.
    assert set_plan(brik.settings, acme.organization.id, "billing").returncode == 0
    state = await brik.billing(acme)
    assert (state["plan"], state["plan_source"]) == ("free", "billing")
    actors = (
        await AuditEvent.filter(
            organization_id=acme.organization.id, action="organization.plan_changed"
        )
        .order_by("created_at")
        .values_list("actor_type", "details")
    )
    assert [(actor, details["plan"]) for actor, details in actors] == [
        ("billing", "pro"), ("cli", "enterprise"), ("cli", "free"),
    ]  # fmt: skip

    missing = set_plan(brik.settings, "org_doesnotexist0000000000", "pro")
    assert missing.returncode != 0
    assert "No such organization" in missing.stderr


async def test_without_stripe_plans_are_set_by_an_admin_and_limits_still_hold(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(plan_free_pushes_per_month=2, plan_pro_pushes_per_month=6)
    acme = await make_tenant("Acme")
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        brik = Brik(http, FakeStripe(upstream=""), settings)
        state = await brik.billing(acme)
        assert (state["billing_enabled"], state["plan"]) == (False, "free")
        for path in ("checkout_sessions", "portal_sessions"):
            refused = await http.post(
                f"/v1/organizations/{acme.organization.id}/billing/{path}",
                headers=acme.owner.headers,
            )
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "billing_disabled"
            assert "brik-cloud set-plan" in refused.json()["error"]["message"]
        payload, signature = _signed_event("evt_x", "customer.subscription.created", {})
        webhook = await http.post("/webhooks/stripe", content=payload,
                                  headers={"stripe-signature": signature})  # fmt: skip
        assert webhook.status_code == 400
        assert webhook.json()["error"]["code"] == "billing_disabled"
        assert (await brik.send(acme, 3)).status_code == 429

        assert set_plan(settings, acme.organization.id, "pro").returncode == 0
        assert (await brik.send(acme, 3)).status_code == 202
        usage = (await http.get(f"/v1/organizations/{acme.organization.id}/usage",
                                headers=acme.owner.headers)).json()  # fmt: skip
        assert (usage["plan"], usage["test"]["pushes"]["limit"]) == ("pro", 6)


async def test_an_organization_that_still_pays_cannot_be_deleted(brik: Brik) -> None:
    acme = await make_tenant("Acme")
    subscription_id = await brik.upgrade(acme)
    path = f"/v1/organizations/{acme.organization.id}"
    refused = await brik.http.delete(path, headers=acme.owner.headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "subscription_active"
    assert subscription_id in refused.json()["error"]["message"]
    assert await Organization.filter(id=acme.organization.id).exists()

    await stripe_delete(brik.stripe, f"/v1/subscriptions/{subscription_id}")
    assert await brik.wait_for_plan(acme, "free")
    deleted = await brik.http.delete(path, headers=acme.owner.headers)
    assert deleted.status_code == 200, deleted.text
    assert not await Organization.filter(id=acme.organization.id).exists()
