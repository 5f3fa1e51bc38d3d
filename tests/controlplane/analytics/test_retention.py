"""Retention: raw events kept for their organization's plan's days, rollups alike for every
plan (hours 35 days, days 400), and nothing else touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.analytics.retention import purge_expired
from controlplane.models import AnalyticsEvent, AnalyticsRollup, KeyMode, Plan
from controlplane.settings import Settings
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_the_purge_keeps_each_plans_days_of_raw_events(
    settings: Settings, database: None
) -> None:
    free = await make_tenant("Free org", roles=())
    pro = await make_tenant("Pro org", roles=())
    pro.organization.plan = Plan.PRO
    await pro.organization.save()
    now = datetime.now(UTC)
    for tenant in (free, pro):
        for age in (1, 10, 100):
            await AnalyticsEvent.create(
                project=tenant.project, mode=KeyMode.TEST, client_id=f"{age}-days",
                name="widget.impression", widget="Score", occurred_at=now - timedelta(days=age),
                received_at=now,
            )  # fmt: skip
    for granularity, age in (("hour", 34), ("hour", 36), ("day", 399), ("day", 401)):
        await AnalyticsRollup.create(
            project=free.project, mode=KeyMode.TEST, granularity=granularity,
            bucket=now - timedelta(days=age), name="widget.impression", dimension="all",
            value="", count=1,
        )  # fmt: skip
    assert await purge_expired(settings, now) == 1 + 2 + 2  # pro: 100 days; free: 10 and 100

    async def kept(tenant_project: str) -> list[str]:
        rows = AnalyticsEvent.filter(project_id=tenant_project).order_by("client_id")
        return [str(client_id) for client_id in await rows.values_list("client_id", flat=True)]

    assert await kept(free.project.id) == ["1-days"]  # Free: 7 days
    assert await kept(pro.project.id) == ["1-days", "10-days"]  # Pro: 90 days
    rollups = await AnalyticsRollup.filter(project_id=free.project.id).order_by("bucket")
    assert [(row.granularity.value, (now - row.bucket).days) for row in rollups] == [
        ("day", 399), ("hour", 34),
    ]  # fmt: skip
