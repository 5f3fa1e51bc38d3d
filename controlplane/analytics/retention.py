"""How long analytics are kept, and the purge that enforces it (a worker job, once a minute).

Raw events are kept for the organization's plan's ``analytics_retention_days`` — basic
analytics on Free (7 days), advanced on Pro (90) and Enterprise (365) by default — counted from
the event's own timestamp, and then deleted, :data:`PURGE_BATCH` rows a statement so no purge
holds many locks or a long transaction. A plan change applies from the next run: a downgrade
purges what the new plan no longer keeps.

The rollups behind the summaries are small and hold no personal data (counts by name, widget,
platform …), so every plan keeps them alike: hourly rows :data:`HOURLY_ROLLUP_DAYS` days (the
short windows use them), daily rows :data:`DAILY_ROLLUP_DAYS` days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypeVar

from tortoise.expressions import Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from controlplane.models import (
    AnalyticsEvent,
    AnalyticsRollup,
    Granularity,
    KeyMode,
    Plan,
    Project,
)
from controlplane.plans import limits_for
from controlplane.settings import Settings

ModelT = TypeVar("ModelT", bound=Model)

PURGE_BATCH = 5000
PURGE_MAX_BATCHES = 200  # per run; the next run (a minute later) carries on
HOURLY_ROLLUP_DAYS = 35
DAILY_ROLLUP_DAYS = 400


def retention(plan: Plan, settings: Settings) -> timedelta | None:
    """How long ``plan`` keeps raw events; None: for good."""
    days = limits_for(plan, settings).analytics_retention_days
    return None if days is None else timedelta(days=days)


async def purge_expired(settings: Settings, now: datetime | None = None) -> int:
    """Delete raw events past their plan's retention and rollups past theirs; returns how many
    rows went."""
    now = now or datetime.now(UTC)
    purged = 0
    budget = PURGE_MAX_BATCHES
    for plan in Plan:
        kept = retention(plan, settings)
        if kept is None:
            continue
        projects = await Project.filter(organization__plan=plan).values_list("id", flat=True)
        for project_id in projects:
            for mode in KeyMode:
                old = AnalyticsEvent.filter(
                    project_id=project_id, mode=mode, occurred_at__lt=now - kept
                )
                deleted, budget = await _delete_in_batches(old, budget)
                purged += deleted
    for granularity, days in ((Granularity.HOUR, HOURLY_ROLLUP_DAYS),
                              (Granularity.DAY, DAILY_ROLLUP_DAYS)):  # fmt: skip
        old_rollups = AnalyticsRollup.filter(
            granularity=granularity, bucket__lt=now - timedelta(days=days)
        )
        deleted, budget = await _delete_in_batches(old_rollups, budget)
        purged += deleted
    return purged


async def _delete_in_batches(rows: QuerySet[ModelT], budget: int) -> tuple[int, int]:
    """Delete ``rows`` :data:`PURGE_BATCH` at a time while ``budget`` (statements) lasts."""
    model = rows.model
    deleted = 0
    while budget > 0:
        budget -= 1
        batch = model.filter(id__in=Subquery(rows.limit(PURGE_BATCH).values("id")))
        count = await batch.delete()
        deleted += count
        if count < PURGE_BATCH:
            break
    return deleted, budget
