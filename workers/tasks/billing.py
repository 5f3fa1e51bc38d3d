"""Billing chores, once a minute: lapse past-due plans, report Pro overage to Stripe.

Overage is reported to a Stripe Billing Meter (``BRIK_STRIPE_OVERAGE_METER_EVENT``) in two
steps, so a push past the quota is billed exactly once whatever fails in between:

1. in one transaction, the month's ``usage_periods.overage_reported`` is advanced to the
   current overage and a ``meter_reports`` row records the difference under an identifier
   derived from where the report starts (organization, month, offset);
2. every unsent report is sent as a meter event carrying that identifier, then marked sent.

A crash after Stripe accepted a report but before it was marked sent repeats step 2 with the
same identifier, and Stripe drops the duplicate.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import stripe
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from controlplane.billing import StripeConnection, lapse_past_due
from controlplane.models import KeyMode, MeterReport, Plan, UsagePeriod
from controlplane.plans import limits_for
from controlplane.settings import Settings
from controlplane.usage import period_end, period_start

logger = logging.getLogger(__name__)


def report_identifier(organization_id: str, start: date, offset: int) -> str:
    return f"brik-overage-{organization_id}-{start:%Y-%m}-{offset}"


async def record_overage(settings: Settings, now: datetime) -> int:
    """Step 1: a meter report for each Pro organization's overage not yet recorded."""
    quota = limits_for(Plan.PRO, settings).pushes_per_month
    if not settings.plan_pro_overage or quota is None:
        return 0
    this_month = period_start(now)
    months = [this_month, (this_month - timedelta(days=1)).replace(day=1)]
    periods = await UsagePeriod.filter(
        mode=KeyMode.LIVE,
        period_start__in=months,
        pushes__gt=F("overage_reported") + quota,
        organization__plan=Plan.PRO,
        organization__stripe_customer_id__isnull=False,
    ).values(
        "id", "organization_id", "period_start", "pushes", "overage_reported",
        customer_id="organization__stripe_customer_id",
    )  # fmt: skip
    recorded = 0
    for period in periods:
        reported, delta = (
            period["overage_reported"],
            period["pushes"] - quota - period["overage_reported"],
        )
        ends = period_end(period["period_start"]) - timedelta(seconds=1)
        async with in_transaction():
            advanced = await UsagePeriod.filter(id=period["id"], overage_reported=reported).update(
                overage_reported=reported + delta
            )
            if not advanced:  # another worker got there first
                continue
            await MeterReport.create(
                organization_id=period["organization_id"],
                customer_id=period["customer_id"],
                period_start=period["period_start"],
                identifier=report_identifier(
                    period["organization_id"], period["period_start"], reported
                ),
                value=delta,
                timestamp=min(now, ends),
            )
        recorded += 1
    return recorded


async def send_meter_reports(settings: Settings, client: stripe.StripeClient) -> int:
    """Step 2: send every unsent report; returns how many Stripe accepted."""
    sent = 0
    for report in await MeterReport.filter(sent_at__isnull=True).order_by("id"):
        try:
            await client.v1.billing.meter_events.create_async(
                params={
                    "event_name": settings.stripe_overage_meter_event,
                    "identifier": report.identifier,
                    "timestamp": int(report.timestamp.timestamp()),
                    "payload": {
                        "stripe_customer_id": report.customer_id,
                        "value": str(report.value),
                    },
                }
            )
        except stripe.StripeError as exc:
            logger.warning("meter report %s not sent (next run retries): %s",
                           report.identifier, exc)  # fmt: skip
            break
        await MeterReport.filter(id=report.id).update(sent_at=datetime.now(UTC))
        sent += 1
    return sent


async def run_billing_chores(
    settings: Settings, connection: StripeConnection | None, now: datetime
) -> dict[str, int]:
    lapsed = await lapse_past_due(settings, now)
    if connection is None:
        return {"lapsed": lapsed, "recorded": 0, "sent": 0}
    recorded = await record_overage(settings, now)
    sent = await send_meter_reports(settings, connection.client)
    return {"lapsed": lapsed, "recorded": recorded, "sent": sent}


async def scheduled_billing(ctx: dict[str, Any]) -> dict[str, int]:
    return await run_billing_chores(ctx["settings"], ctx.get("stripe"), datetime.now(UTC))
