"""Plans: what each one allows, read from settings (see the plans table in docs/billing.md).

Three plans, as in the product brief: Free (10,000 pushes a month, 1 GB of state), Pro
($49/month: 100,000 pushes, 10 GB, then metered overage when enabled) and Enterprise
(unlimited). Every plan also has a request rate, enforced per project and per API key.
Test-mode pushes have a quota of their own, the same size as the live one, and are never billed.
Analytics are on every plan; what differs is how long raw events are kept — basic analytics
(Free, 7 days) or advanced (Pro 90 days, Enterprise a year) — while the hourly and daily counts
behind the summaries are kept the same on every plan (``controlplane/analytics/retention.py``).
Realtime channels hold a bounded number of open streams per project (Free 100, Pro 10,000,
Enterprise unlimited; ``controlplane/realtime/limits.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.models import KeyMode, Plan
from controlplane.settings import Settings

UNLIMITED = -1


@dataclass(frozen=True)
class PlanLimits:
    plan: Plan
    pushes_per_month: int | None  # None: unlimited
    state_bytes: int | None
    requests_per_second: float
    burst: int  # requests a bucket holds when full
    overage: bool  # may send past the push quota, billed per push
    analytics_retention_days: int | None  # raw analytics events; None: kept
    realtime_connections: int | None  # open realtime streams per project; None: unlimited

    def push_quota(self, mode: KeyMode) -> int | None:
        """The hard cap on ``mode``'s pushes this month, or None when there is none.

        Overage is billed, so it applies to live mode only: test mode always stops at its quota.
        """
        return None if self.overage and mode is KeyMode.LIVE else self.pushes_per_month


def _limit(value: int) -> int | None:
    return None if value == UNLIMITED else value


def limits_for(plan: Plan, settings: Settings) -> PlanLimits:
    name = plan.value
    rate: float = getattr(settings, f"plan_{name}_requests_per_second")
    return PlanLimits(
        plan=plan,
        pushes_per_month=_limit(getattr(settings, f"plan_{name}_pushes_per_month")),
        state_bytes=_limit(getattr(settings, f"plan_{name}_state_bytes")),
        requests_per_second=rate,
        burst=max(1, round(rate * settings.rate_limit_burst_seconds)),
        overage=plan is Plan.PRO and settings.plan_pro_overage,
        analytics_retention_days=_limit(getattr(settings, f"plan_{name}_analytics_retention_days")),
        realtime_connections=_limit(getattr(settings, f"plan_{name}_realtime_connections")),
    )
