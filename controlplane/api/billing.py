"""``/v1/organizations/{organization_id}/billing``: the plan, the subscription behind it, and
the Stripe pages to upgrade and to manage it (``controlplane/billing.py`` does the work).

Members may read it; only owners (``billing:manage``) get Checkout and Portal links.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from controlplane import billing
from controlplane.api.routing import Call, Operation
from controlplane.auth.permissions import Permission
from controlplane.models import Plan, PlanSource
from controlplane.models import Subscription as SubscriptionRow


class Subscription(BaseModel):
    object: Literal["subscription"] = "subscription"
    id: str
    status: str
    plan: Plan | None
    price_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    past_due_since: datetime | None
    grace_period_ends_at: datetime | None  # past_due: when the plan lapses to Free

    @classmethod
    def of(cls, row: SubscriptionRow, call: Call) -> Subscription:
        return cls(
            id=row.id,
            status=row.status,
            plan=row.plan,
            price_id=row.price_id,
            current_period_start=row.current_period_start,
            current_period_end=row.current_period_end,
            cancel_at_period_end=row.cancel_at_period_end,
            canceled_at=row.canceled_at,
            past_due_since=row.past_due_since,
            grace_period_ends_at=billing.grace_ends_at(row, call.settings),
        )


class Billing(BaseModel):
    object: Literal["billing"] = "billing"
    organization_id: str
    billing_enabled: bool  # Stripe is connected on this server
    plan: Plan
    plan_source: PlanSource  # admin: set by an administrator, billing ignores it
    stripe_customer_id: str | None
    subscriptions: list[Subscription]


class BillingSession(BaseModel):
    """A Stripe-hosted page to send the user to."""

    object: Literal["checkout_session", "portal_session"]
    id: str
    url: str


async def retrieve_billing(call: Call) -> Billing:
    organization = call.tenant.organization
    rows = await call.tenant.query(SubscriptionRow).order_by("-current_period_end")
    return Billing(
        organization_id=organization.id,
        billing_enabled=call.settings.stripe_enabled,
        plan=organization.plan,
        plan_source=organization.plan_source,
        stripe_customer_id=organization.stripe_customer_id,
        subscriptions=[Subscription.of(row, call) for row in rows],
    )


async def create_checkout_session(call: Call) -> BillingSession:
    """Stripe Checkout for the Pro plan; the plan changes when Stripe's webhook confirms it."""
    session = await billing.create_checkout_session(
        call.request.app.state.stripe, call.settings, call.tenant.organization, call.user
    )
    return BillingSession(object="checkout_session", id=session.id, url=session.url)


async def create_portal_session(call: Call) -> BillingSession:
    """The Stripe Customer Portal: payment methods, invoices, cancelation."""
    session = await billing.create_portal_session(
        call.request.app.state.stripe, call.settings, call.tenant.organization, call.user
    )
    return BillingSession(object="portal_session", id=session.id, url=session.url)


BILLING = "/v1/organizations/{organization_id}/billing"
_REFUSALS = "A 400 when this server has no Stripe connected (`billing_disabled`)"
operations = [
    Operation(
        "GET",
        BILLING,
        retrieve_billing,
        "An organization's plan, who set it, and its Stripe subscriptions",
        "Billing",
        permission=Permission.ORGANIZATION_READ,
        response=Billing,
    ),
    Operation(
        "POST",
        f"{BILLING}/checkout_sessions",
        create_checkout_session,
        "Start a Stripe Checkout to upgrade to Pro (returns the URL to send the owner to)",
        "Billing",
        permission=Permission.BILLING_MANAGE,
        response=BillingSession,
        status_code=201,
        description=_REFUSALS + ", `already_subscribed` (a subscription is active) or "
        "`plan_managed_by_admin` (an administrator set the plan).",
    ),
    Operation(
        "POST",
        f"{BILLING}/portal_sessions",
        create_portal_session,
        "Open the Stripe Customer Portal to manage payment or cancel (returns its URL)",
        "Billing",
        permission=Permission.BILLING_MANAGE,
        response=BillingSession,
        status_code=201,
        description=_REFUSALS + ".",
    ),
]
