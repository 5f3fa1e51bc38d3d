"""Billing through Stripe, and the one place an organization's plan is changed.

Billing is optional: with no ``BRIK_STRIPE_SECRET_KEY`` nothing is billed and an administrator
sets plans (``brik-cloud set-plan``); limits apply either way. With Stripe connected::

    upgrade   POST /v1/organizations/{id}/billing/checkout_sessions → a Stripe Checkout URL
    Stripe    POST /webhooks/stripe (signed) → the subscription is read back from Stripe,
              mirrored in ``billing_subscriptions``, and the organization's plan follows it
    manage    POST /v1/organizations/{id}/billing/portal_sessions → a Customer Portal URL
    past_due  the plan is kept for BRIK_BILLING_PAST_DUE_GRACE_SECONDS, then Free (worker cron)
    overage   pushes past the Pro quota are reported as meter events (workers/tasks/billing.py)

Each organization gets one Stripe customer, created the first time it is needed. The mirror is
written only from the subscription as Stripe returns it *now*, never from an event's payload,
so a duplicate or late event can only re-apply the current state. An administrator's plan
(``plan_source = admin``) wins over billing until it is handed back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import stripe
from tortoise.transactions import in_transaction

from controlplane import audit
from controlplane.errors import InvalidRequest, ServiceUnavailable
from controlplane.models import KeyMode, Organization, Plan, PlanSource, Subscription, User
from controlplane.settings import Settings
from controlplane.webhook_events import (
    emit_to_organization,
    plan_changed_data,
    subscription_changed_data,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Subscription statuses that pay for their plan; past_due does too, for a grace period.
PAYING_STATUSES = frozenset({"active", "trialing"})
PAST_DUE = "past_due"


class _HTTPXClient(stripe.HTTPXClient):
    """stripe's httpx adapter, handing the encoded form to httpx as ``content``: it passes it
    as ``data``, which httpx deprecates for raw bytes (a DeprecationWarning per request)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return [args, kwargs]


@dataclass(frozen=True)
class StripeConnection:
    """The Stripe client of one process (API or worker), over one pooled httpx client."""

    client: stripe.StripeClient
    http: stripe.HTTPXClient

    @classmethod
    def open(cls, settings: Settings) -> StripeConnection | None:
        """A connection to the configured Stripe account, or None when billing is off."""
        if settings.stripe_secret_key is None:
            return None
        http = _HTTPXClient()
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses=base,  # type: ignore[arg-type]
            http_client=http,
            max_network_retries=2,
        )
        return cls(client, http)

    async def close(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]


def require_client(connection: StripeConnection | None) -> stripe.StripeClient:
    if connection is None:
        raise InvalidRequest(
            "Billing is not configured on this server (no BRIK_STRIPE_SECRET_KEY): an "
            "administrator sets plans with `brik-cloud set-plan`.",
            code="billing_disabled",
        )
    return connection.client


async def call_stripe(request: Awaitable[T]) -> T:
    """Await a Stripe call; Stripe being unreachable or refusing is a 503, with the reason."""
    try:
        return await request
    except stripe.StripeError as exc:
        logger.warning("Stripe call failed: %s", exc)
        raise ServiceUnavailable(
            f"Stripe did not complete the request: {exc.user_message or exc}",
            code="billing_unavailable",
        ) from None


def plan_of_price(price_id: str | None, settings: Settings) -> Plan | None:
    if price_id is not None and price_id in settings.stripe_pro_price_ids:
        return Plan.PRO
    return None


# --- customers, Checkout and the Customer Portal -------------------------------------------


async def ensure_customer(
    client: stripe.StripeClient, organization: Organization, user: User
) -> str:
    """The organization's Stripe customer, created on first use.

    The organization row is locked first, so two concurrent first uses create one customer;
    the idempotency key makes a retried create return the same one.
    """
    locked = await Organization.select_for_update().get(id=organization.id)
    if locked.stripe_customer_id:
        organization.stripe_customer_id = locked.stripe_customer_id
        return locked.stripe_customer_id
    customer = await call_stripe(
        client.v1.customers.create_async(
            params={
                "name": organization.name,
                "email": user.email,
                "metadata": {"organization_id": organization.id},
            },
            options={"idempotency_key": f"brik-customer-{organization.id}"},
        )
    )
    organization.stripe_customer_id = customer.id
    await Organization.filter(id=organization.id).update(stripe_customer_id=customer.id)
    return customer.id


def dashboard_billing_url(settings: Settings, organization: Organization, outcome: str) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/dashboard/organizations/{organization.id}/billing?checkout={outcome}"


async def paying_subscription(organization: Organization, now: datetime, settings: Settings) -> (
    Subscription | None
):  # fmt: skip
    for subscription in await Subscription.filter(organization_id=organization.id):
        if entitled_plan(subscription, now, settings) is not None:
            return subscription
    return None


async def create_checkout_session(
    connection: StripeConnection | None,
    settings: Settings,
    organization: Organization,
    user: User,
) -> Any:
    """A Stripe Checkout Session that subscribes the organization to Pro."""
    client = require_client(connection)
    if not settings.stripe_pro_price_ids:
        raise InvalidRequest(
            "Billing has no Pro price configured (BRIK_STRIPE_PRO_PRICE_IDS).",
            code="billing_disabled",
        )
    if organization.plan_source is PlanSource.ADMIN:
        raise InvalidRequest(
            f"This organization's plan ({organization.plan}) is set by an administrator; "
            "ask them to change it.",
            code="plan_managed_by_admin",
        )
    if await paying_subscription(organization, datetime.now(UTC), settings) is not None:
        raise InvalidRequest(
            "This organization already has a subscription: change or cancel it in the "
            "Customer Portal (POST /v1/organizations/{id}/billing/portal_sessions).",
            code="already_subscribed",
        )
    customer_id = await ensure_customer(client, organization, user)
    line_items: list[dict[str, Any]] = [{"price": settings.stripe_pro_price_ids[0], "quantity": 1}]
    if settings.plan_pro_overage and settings.stripe_overage_price_id:
        line_items.append({"price": settings.stripe_overage_price_id})
    return await call_stripe(
        client.v1.checkout.sessions.create_async(
            params={  # type: ignore[arg-type]
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": organization.id,
                "line_items": line_items,
                "subscription_data": {"metadata": {"organization_id": organization.id}},
                "success_url": dashboard_billing_url(settings, organization, "success"),
                "cancel_url": dashboard_billing_url(settings, organization, "canceled"),
            }
        )
    )


async def create_portal_session(
    connection: StripeConnection | None,
    settings: Settings,
    organization: Organization,
    user: User,
) -> Any:
    """A Stripe Customer Portal session: payment methods, invoices, cancel."""
    client = require_client(connection)
    customer_id = await ensure_customer(client, organization, user)
    return await call_stripe(
        client.v1.billing_portal.sessions.create_async(
            params={
                "customer": customer_id,
                "return_url": dashboard_billing_url(settings, organization, "portal"),
            }
        )
    )


# --- mirroring subscriptions and deciding the plan -----------------------------------------


def _timestamp(value: object) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class SubscriptionState:
    """What Brik keeps of a Stripe subscription object."""

    id: str
    customer_id: str
    status: str
    price_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None

    @classmethod
    def of(cls, subscription: dict[str, Any], settings: Settings) -> SubscriptionState:
        items: list[dict[str, Any]] = (subscription.get("items") or {}).get("data") or []

        def price_of(item: dict[str, Any]) -> str | None:
            # Newer API versions name it `price`; older ones (and localstripe) `plan`.
            price = item.get("price") or item.get("plan") or {}
            return price.get("id") if isinstance(price, dict) else None

        chosen = next(
            (item for item in items if plan_of_price(price_of(item), settings) is not None),
            items[0] if items else {},
        )
        # Since API version 2025-03-31 the period is on each item, before on the subscription.
        start = chosen.get("current_period_start", subscription.get("current_period_start"))
        end = chosen.get("current_period_end", subscription.get("current_period_end"))
        customer = subscription.get("customer")
        if isinstance(customer, dict):
            customer = customer.get("id")
        return cls(
            id=str(subscription["id"]),
            customer_id=str(customer),
            status=str(subscription.get("status")),
            price_id=price_of(chosen),
            current_period_start=_timestamp(start),
            current_period_end=_timestamp(end),
            cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
            canceled_at=_timestamp(subscription.get("canceled_at")),
        )


def grace_ends_at(subscription: Subscription, settings: Settings) -> datetime | None:
    """When a past-due subscription stops paying for its plan (None: it is not past due)."""
    if subscription.past_due_since is None:
        return None
    return subscription.past_due_since + timedelta(seconds=settings.billing_past_due_grace_seconds)


def entitled_plan(subscription: Subscription, now: datetime, settings: Settings) -> Plan | None:
    """The plan ``subscription`` pays for at ``now``, or None (canceled, unpaid, lapsed)."""
    if subscription.plan is None:
        return None
    if subscription.status in PAYING_STATUSES:
        return subscription.plan
    grace_ends = grace_ends_at(subscription, settings)
    if subscription.status == PAST_DUE and grace_ends is not None and now < grace_ends:
        return subscription.plan
    return None


async def mirror_subscription(
    state: SubscriptionState, settings: Settings, now: datetime, origin: audit.Origin | None
) -> Subscription | None:
    """Store ``state`` (as just read from Stripe) and move the organization's plan with it.

    Returns None when the subscription belongs to no organization here.
    """
    organization = await Organization.select_for_update().get_or_none(
        stripe_customer_id=state.customer_id
    )
    if organization is None:
        logger.info("Stripe subscription %s: no organization has customer %s",
                    state.id, state.customer_id)  # fmt: skip
        return None
    row = await Subscription.get_or_none(id=state.id)
    before = None if row is None else (row.status, row.plan, row.cancel_at_period_end)
    past_due_since = row.past_due_since if row is not None else None
    if state.status != PAST_DUE:
        past_due_since = None
    elif past_due_since is None:
        past_due_since = now
    values = {
        "organization_id": organization.id,
        "customer_id": state.customer_id,
        "status": state.status,
        "price_id": state.price_id,
        "plan": plan_of_price(state.price_id, settings),
        "current_period_start": state.current_period_start,
        "current_period_end": state.current_period_end,
        "cancel_at_period_end": state.cancel_at_period_end,
        "canceled_at": state.canceled_at,
        "past_due_since": past_due_since,
    }
    if row is None:
        row = await Subscription.create(id=state.id, **values)  # type: ignore[arg-type]
    else:
        await row.update_from_dict(values).save()
    if before != (row.status, row.plan, row.cancel_at_period_end):
        await emit_to_organization(
            organization.id, KeyMode.LIVE, "billing.subscription_changed",
            subscription_changed_data(
                row.id, organization.id, row.status, before[0] if before else None,
                row.plan.value if row.plan else None, row.cancel_at_period_end,
                row.current_period_end,
            ),
            ordering_key=organization.id,
        )  # fmt: skip
    await apply_billing_plan(organization, settings, now, origin)
    return row


async def billing_plan(organization: Organization, settings: Settings, now: datetime) -> Plan:
    """The plan the organization's subscriptions pay for now (Free when none does)."""
    paid = [
        plan
        for subscription in await Subscription.filter(organization_id=organization.id)
        if (plan := entitled_plan(subscription, now, settings)) is not None
    ]
    order = [Plan.FREE, Plan.PRO, Plan.ENTERPRISE]
    return max(paid, key=order.index, default=Plan.FREE)


async def apply_billing_plan(
    organization: Organization, settings: Settings, now: datetime, origin: audit.Origin | None
) -> bool:
    """Set the plan billing pays for, unless an administrator set it; True when it changed."""
    if organization.plan_source is PlanSource.ADMIN:
        return False
    plan = await billing_plan(organization, settings, now)
    return await change_plan(
        organization, plan, PlanSource.BILLING, audit.Actor("billing", None), origin
    )


async def change_plan(
    organization: Organization,
    plan: Plan,
    source: PlanSource,
    actor: audit.Actor,
    origin: audit.Origin | None,
) -> bool:
    """Move the organization to ``plan``, recorded in the audit log; True when it changed.

    Every plan change goes through here. The API reads the plan from the database on each
    request, so new limits apply to the very next one.
    """
    previous, previous_source = organization.plan, organization.plan_source
    if (previous, previous_source) == (plan, source):
        return False
    organization.plan, organization.plan_source = plan, source
    await organization.save(update_fields=["plan", "plan_source"])
    if previous != plan:
        logger.info("organization %s: plan %s -> %s (%s)", organization.id, previous, plan, source)
        await audit.record(
            "organization.plan_changed",
            origin=origin,
            actor=actor,
            organization_id=organization.id,
            target_type="organization",
            target_id=organization.id,
            details={"plan": plan.value, "previous_plan": previous.value, "source": source.value},
        )
        await emit_to_organization(
            organization.id, KeyMode.LIVE, "billing.plan_changed",
            plan_changed_data(organization.id, plan.value, previous.value, source.value),
            ordering_key=organization.id,
        )  # fmt: skip
    return True


async def set_plan_by_admin(
    organization: Organization,
    plan: Plan | None,
    settings: Settings,
    actor: audit.Actor,
    origin: audit.Origin | None = None,
) -> Plan:
    """An administrator sets the plan (it then stays until they change it), or with ``None``
    hands the plan back to billing. Returns the plan now in force."""
    if plan is not None:
        await change_plan(organization, plan, PlanSource.ADMIN, actor, origin)
        return organization.plan
    plan = await billing_plan(organization, settings, datetime.now(UTC))
    await change_plan(organization, plan, PlanSource.BILLING, actor, origin)
    return organization.plan


async def lapse_past_due(settings: Settings, now: datetime) -> int:
    """Apply the plan of every organization with a past_due subscription whose grace has run
    out (run by a worker cron); returns how many organizations changed plan."""
    cutoff = now - timedelta(seconds=settings.billing_past_due_grace_seconds)
    organization_ids = await Subscription.filter(
        status=PAST_DUE, past_due_since__lte=cutoff
    ).values_list("organization_id", flat=True)
    changed = 0
    for organization_id in set(organization_ids):
        async with in_transaction():
            organization = await Organization.select_for_update().get(id=organization_id)
            changed += await apply_billing_plan(organization, settings, now, None)
    return changed
