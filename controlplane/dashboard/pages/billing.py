"""An organization's usage and billing: this month's usage per day as charts (pushes and API
requests, live and test), the meters against the plan's limits, the plans, the subscription,
and the way to Stripe — upgrade through Checkout, manage payment in the Customer Portal.

Stripe's pages are reached through the dashboard: the page's form posts here, the handler runs
the API's operation (``POST …/billing/checkout_sessions`` or ``…/portal_sessions``, owners only)
and answers 303 to the URL Stripe made. Browsers apply the page's ``form-action`` policy to
that redirect too, so the billing page's Content-Security-Policy names Stripe's origins
(:func:`stripe_origins`). Stripe sends the browser back here with ``?checkout=success``,
``canceled`` or ``portal`` (``controlplane/billing.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from starlette.responses import Response

from controlplane.api.billing import Billing, BillingSession
from controlplane.api.usage import Day, Meter, Usage
from controlplane.dashboard.charts import BarChart, Series
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError
from controlplane.models import Plan, PlanSource
from controlplane.plans import PlanLimits, limits_for
from controlplane.settings import Settings

USAGE = "/v1/organizations/{organization_id}/usage"
BILLING = "/v1/organizations/{organization_id}/billing"
# Where Stripe serves Checkout and the Customer Portal.
STRIPE_PAGES = ("https://checkout.stripe.com", "https://billing.stripe.com")
# Statuses of a subscription that pays (past_due: until its grace ends); while one does,
# Checkout is refused (already_subscribed) and the portal is the way to change it.
PAYING = frozenset({"active", "trialing"})
RETURNS = {
    "canceled": "Checkout canceled: nothing was charged and your plan is unchanged.",
    "portal": "Back from Stripe's billing portal. Changes made there show here as soon as "
    "Stripe confirms them.",
}


def stripe_origins(settings: Settings) -> tuple[str, ...]:
    """Sites the billing page's forms lead to: Stripe's, or the stand-in the server talks to
    (``BRIK_STRIPE_API_BASE``, which then serves the pages too)."""
    if settings.stripe_api_base:
        return (*STRIPE_PAGES, settings.stripe_api_base)
    return STRIPE_PAGES


@dataclass(frozen=True)
class MeterRow:
    """One line of 'this month': a meter, what it measures and how to write its numbers."""

    meter_id: str
    label: str
    meter: Meter
    unit: Literal["count", "bytes"]
    without_limit: str = "Unlimited"  # what the limit column says when there is none


def usage_chart(
    chart_id: str, title: str, y_label: str, usage: Usage, metric: Literal["pushes", "api_requests"]
) -> BarChart:
    """This period's ``metric`` per day, live and test stacked."""
    live, test = usage.daily["live"], usage.daily["test"]

    def values(days: list[Day]) -> list[int]:
        return [getattr(day, metric) for day in days]

    dates: list[date] = [day.date for day in live]
    return BarChart(
        chart_id=chart_id,
        title=title,
        categories=[day.isoformat() for day in dates],
        tick_labels=[str(day.day) for day in dates],
        series=[Series("Live", values(live)), Series("Test", values(test), "bar-test")],
        y_label=y_label,
        x_label=f"Day of {dates[0]:%B %Y} (UTC)" if dates else "Day (UTC)",
    )


def meters(usage: Usage) -> list[MeterRow]:
    return [
        MeterRow("meter-live-pushes", "Live pushes", usage.live.pushes, "count"),
        MeterRow("meter-test-pushes", "Test pushes", usage.test.pushes, "count"),
        MeterRow("meter-live-state", "Live state storage", usage.live.state_bytes, "bytes"),
        MeterRow("meter-test-state", "Test state storage", usage.test.state_bytes, "bytes"),
        MeterRow("meter-live-requests", "Live API requests", usage.live.api_requests, "count",
                 "No monthly limit (a rate limit)"),
        MeterRow("meter-test-requests", "Test API requests", usage.test.api_requests, "count",
                 "No monthly limit (a rate limit)"),
    ]  # fmt: skip


def return_notice(outcome: str | None, billing: Billing) -> str | None:
    """What to say when Stripe sends the browser back (``?checkout=…``)."""
    if outcome == "success":
        if billing.plan is not Plan.FREE:
            return f"Payment received: you are on the {billing.plan.value.capitalize()} plan."
        return (
            "Payment received. Your plan changes as soon as Stripe confirms it — usually "
            "within seconds: reload this page."
        )
    return RETURNS.get(outcome or "")


async def _page(view: View, *, error: APIError | None = None, status_code: int = 200) -> Response:
    params = {"organization_id": view.organization_id}
    usage = await view.gateway.get(Usage, USAGE, params=params)
    billing = await view.gateway.get(Billing, BILLING, params=params)
    now = datetime.now(UTC)
    subscribed = any(
        s.plan is not None
        and (s.status in PAYING
             or (s.grace_period_ends_at is not None and s.grace_period_ends_at > now))
        for s in billing.subscriptions
    )  # fmt: skip
    plans: list[PlanLimits] = [limits_for(plan, view.settings) for plan in Plan]
    context: dict[str, Any] = {
        "usage": usage,
        "billing": billing,
        "charts": [
            usage_chart("chart-pushes", "Pushes per day", "Pushes", usage, "pushes"),
            usage_chart(
                "chart-requests", "API requests per day", "Requests", usage, "api_requests"
            ),
        ],
        "meters": meters(usage),
        "plans": plans,
        "pro": limits_for(Plan.PRO, view.settings),
        "may_upgrade": billing.billing_enabled
        and billing.plan_source is not PlanSource.ADMIN
        and billing.plan is not Plan.ENTERPRISE
        and not subscribed,
        "may_manage": billing.billing_enabled and billing.stripe_customer_id is not None,
        "notice": return_notice(view.request.query_params.get("checkout"), billing),
        "error": error,
    }
    return view.render(
        "billing.html",
        status_code=status_code,
        form_targets=stripe_origins(view.settings),
        **context,
    )


async def usage_and_billing(view: View) -> Response:
    return await _page(view)


async def _to_stripe(view: View, sessions: str) -> Response:
    """Run the operation that makes a Stripe page for this organization, then send the
    browser there; a refusal (not an owner, billing off, already subscribed) is shown here."""
    await view.form()  # a form from the dashboard (a cross-site one was refused already)
    try:
        session = await view.gateway.run(
            "POST", f"{BILLING}/{sessions}", params={"organization_id": view.organization_id}
        )
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code)
    assert isinstance(session, BillingSession)
    return view.redirect(session.url)


async def start_checkout(view: View) -> Response:
    return await _to_stripe(view, "checkout_sessions")


async def open_portal(view: View) -> Response:
    return await _to_stripe(view, "portal_sessions")


routes = [
    dashboard_page("/organizations/{organization_id}/billing", usage_and_billing),
    dashboard_page(
        "/organizations/{organization_id}/billing/checkout", start_checkout, methods=("POST",)
    ),
    dashboard_page(
        "/organizations/{organization_id}/billing/portal", open_portal, methods=("POST",)
    ),
]
