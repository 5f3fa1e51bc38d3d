"""Usage: the current period, the plan's limits and a per-day series, per organization.

``GET /v1/usage`` answers a project's secret key (scope ``usage:read``) about its
organization; ``GET /v1/organizations/{organization_id}/usage`` answers its members (the
dashboard). Both show live and test mode side by side.

Pushes and requests are counted per month; state bytes are a level, not a count: the meter is
what is stored now (``controlplane/state.py``), and each day of the series what was stored at
that day's last snapshot (the worker takes one a minute).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from controlplane.api.routing import Auth, Call, Operation
from controlplane.auth.permissions import Permission
from controlplane.models import KeyMode, Organization, Plan, UsageDay, UsageMetric, UsagePeriod
from controlplane.plans import limits_for
from controlplane.state import stored_bytes
from controlplane.usage import period_end, period_start


class Meter(BaseModel):
    used: int
    limit: int | None  # None: unlimited
    remaining: int | None


class ModeUsage(BaseModel):
    pushes: Meter
    api_requests: Meter
    state_bytes: Meter


class Day(BaseModel):
    date: date
    pushes: int
    api_requests: int
    state_bytes: int


class RateLimit(BaseModel):
    requests_per_second: float
    burst: int


class Usage(BaseModel):
    object: Literal["usage"] = "usage"
    organization_id: str
    plan: Plan
    period_start: datetime
    period_end: datetime
    overage_enabled: bool
    live: ModeUsage
    test: ModeUsage
    rate_limit: RateLimit
    daily: dict[Literal["live", "test"], list[Day]]


def _meter(used: int, limit: int | None) -> Meter:
    return Meter(used=used, limit=limit, remaining=None if limit is None else max(0, limit - used))


async def usage_of(organization: Organization, call: Call) -> Usage:
    now = datetime.now(UTC)
    start = period_start(now)
    limits = limits_for(organization.plan, call.settings)
    pushes = dict(
        await UsagePeriod.filter(organization_id=organization.id, period_start=start)
        .values_list("mode", "pushes")
    )  # fmt: skip
    rows = await UsageDay.filter(
        organization_id=organization.id, day__gte=start, day__lte=now.date()
    ).values_list("day", "mode", "metric", "value")
    state_bytes = await stored_bytes(organization.id)  # now, not a day's snapshot
    by_day: dict[tuple[str, date], dict[str, int]] = defaultdict(dict)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for day, mode, metric, value in rows:
        by_day[(str(mode), day)][str(metric)] = int(value)
        totals[(str(mode), str(metric))] += int(value)

    def mode_usage(mode: KeyMode) -> ModeUsage:
        return ModeUsage(
            pushes=_meter(int(pushes.get(mode, 0)), limits.pushes_per_month),
            api_requests=_meter(totals[(mode.value, UsageMetric.API_REQUESTS.value)], None),
            state_bytes=_meter(state_bytes.get(mode, 0), limits.state_bytes),
        )  # fmt: skip

    days = [start + timedelta(days=n) for n in range((now.date() - start).days + 1)]

    def series(mode: KeyMode) -> list[Day]:
        return [
            Day(date=day, **{metric.value: by_day[(mode.value, day)].get(metric.value, 0)
                             for metric in UsageMetric})
            for day in days
        ]  # fmt: skip

    return Usage(
        organization_id=organization.id,
        plan=organization.plan,
        period_start=datetime.combine(start, datetime.min.time(), tzinfo=UTC),
        period_end=period_end(start),
        overage_enabled=limits.overage,
        live=mode_usage(KeyMode.LIVE),
        test=mode_usage(KeyMode.TEST),
        rate_limit=RateLimit(requests_per_second=limits.requests_per_second, burst=limits.burst),
        daily={"live": series(KeyMode.LIVE), "test": series(KeyMode.TEST)},
    )


async def retrieve_key_usage(call: Call) -> Usage:
    """The API key's organization."""
    return await usage_of(call.tenant.organization, call)


async def retrieve_organization_usage(call: Call) -> Usage:
    """The organization in the path (the dashboard's view)."""
    return await usage_of(call.tenant.organization, call)


operations = [
    Operation(
        "GET",
        "/v1/usage",
        retrieve_key_usage,
        "The organization's usage this month: pushes, requests and storage against its plan",
        "Usage",
        auth=Auth.API_KEY,
        scope="usage:read",
        response=Usage,
    ),
    Operation(
        "GET",
        "/v1/organizations/{organization_id}/usage",
        retrieve_organization_usage,
        "An organization's usage this month, with its plan's limits and a per-day series",
        "Usage",
        permission=Permission.ORGANIZATION_READ,
        response=Usage,
    ),
]
