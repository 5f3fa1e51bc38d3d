"""Reading analytics back: summaries from the rollups, and raw events page by page.

A summary never touches raw events: it adds up rollup rows (``controlplane/models/analytics.py``)
of whole buckets — hours for windows up to :data:`HOURLY_WINDOW` that start within the hourly
rows' retention, days otherwise — so 30 days of a busy app is a few hundred rows. The push
figures come from the deliveries themselves (delivered ÷ attempted, as ``GET /v1/stats``) and
the opens from ``push.opened`` events, so the open rate is opens ÷ deliveries delivered in the
same window; active Live Activities are counted now, from the activities.

Raw events are read newest first for the JSON list (keyset pages on (timestamp, row)), and
oldest first, in chunks, for the CSV export, which is streamed and so never held in memory
whatever the range.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tortoise.expressions import Q
from tortoise.functions import Count, Sum
from tortoise.queryset import QuerySet

from controlplane.analytics import events as names
from controlplane.analytics.retention import DAILY_ROLLUP_DAYS, HOURLY_ROLLUP_DAYS
from controlplane.models import (
    OPEN_ACTIVITY_STATUSES,
    Activity,
    AnalyticsEvent,
    AnalyticsRollup,
    Delivery,
    DeliveryStatus,
    Dimension,
    Granularity,
    KeyMode,
)

HOURLY_WINDOW = timedelta(hours=72)
MAX_GROUPS = 100
CSV_CHUNK = 2000
ATTEMPTED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.INVALID_TOKEN)


class Period(StrEnum):
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"


_PERIODS = {
    Period.DAY: (Granularity.HOUR, 24),
    Period.WEEK: (Granularity.DAY, 7),
    Period.MONTH: (Granularity.DAY, 30),
}


class GroupBy(StrEnum):
    DAY = "day"
    WIDGET = "widget"
    PLATFORM = "platform"
    OS_VERSION = "os_version"
    DEVICE_MODEL = "device_model"
    COUNTRY = "country"
    APP_VERSION = "app_version"


def _floor(moment: datetime, granularity: Granularity) -> datetime:
    hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour if granularity is Granularity.HOUR else hour.replace(hour=0)


@dataclass(frozen=True)
class Window:
    """Whole buckets from ``start`` (a bucket's first moment) up to ``end``."""

    start: datetime
    end: datetime
    granularity: Granularity

    @classmethod
    def of(
        cls,
        now: datetime,
        period: Period,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Window:
        """The window a query names: ``since``/``until`` when given (``until`` defaults to
        now), else the ``period`` ending at ``until``. Nothing is kept from before
        :data:`DAILY_ROLLUP_DAYS`, so an earlier start is moved up to it."""
        end = until or now
        oldest = _floor(now - timedelta(days=DAILY_ROLLUP_DAYS), Granularity.DAY)
        if since is None:
            granularity, buckets = _PERIODS[period]
            step = timedelta(hours=1) if granularity is Granularity.HOUR else timedelta(days=1)
            start = _floor(end, granularity) - (buckets - 1) * step
            return cls(max(start, oldest), end, granularity)
        hourly_kept = now - timedelta(days=HOURLY_ROLLUP_DAYS)
        short = end - since <= HOURLY_WINDOW and since >= hourly_kept
        granularity = Granularity.HOUR if short else Granularity.DAY
        return cls(max(_floor(since, granularity), oldest), end, granularity)

    def days(self) -> list[str]:
        """Every UTC day the window touches, as ISO dates."""
        first = _floor(self.start, Granularity.DAY)
        count = (self.end - first).days + 1
        if _floor(self.end, Granularity.DAY) == self.end and count > 1:
            count -= 1  # a window ending at midnight does not reach into that day
        return [(first + timedelta(days=n)).date().isoformat() for n in range(count)]


@dataclass
class Group:
    key: str | None  # None: events without this dimension's value
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(self.counts.values())


@dataclass
class Summary:
    window: Window
    counts: dict[str, int]  # events by name over the window
    widgets: dict[str, dict[str, int]]  # widget → name → count (impressions, clicks)
    groups: list[Group]
    groups_truncated: bool
    deliveries: dict[str, int]  # attempted deliveries by final status
    active_activities: int

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)


def _rollups(project_id: str, mode: KeyMode, window: Window) -> QuerySet[AnalyticsRollup]:
    return AnalyticsRollup.filter(
        project_id=project_id, mode=mode, granularity=window.granularity,
        bucket__gte=window.start, bucket__lt=window.end,
    )  # fmt: skip


async def summary(project_id: str, mode: KeyMode, window: Window, group_by: GroupBy) -> Summary:
    rollups = _rollups(project_id, mode, window)
    everything = rollups.filter(dimension=Dimension.ALL)
    totals = (
        await everything.annotate(total=Sum("count")).group_by("name").values_list("name", "total")
    )
    by_widget: dict[str, dict[str, int]] = defaultdict(dict)
    widget_rows = (
        await rollups.filter(
            dimension=Dimension.WIDGET, name__in=(names.WIDGET_IMPRESSION, names.WIDGET_CLICK)
        )
        .annotate(total=Sum("count"))
        .group_by("value", "name")
        .values_list("value", "name", "total")
    )
    for widget, name, total in widget_rows:
        by_widget[str(widget)][str(name)] = int(total)
    groups, truncated = await _groups(rollups, window, group_by)
    return Summary(
        window=window,
        counts={str(name): int(total) for name, total in totals},
        widgets=dict(by_widget),
        groups=groups,
        groups_truncated=truncated,
        deliveries=await _deliveries(project_id, mode, window),
        active_activities=await Activity.filter(
            project_id=project_id, mode=mode, status__in=OPEN_ACTIVITY_STATUSES
        ).count(),
    )


async def _groups(
    rollups: QuerySet[AnalyticsRollup], window: Window, group_by: GroupBy
) -> tuple[list[Group], bool]:
    if group_by is GroupBy.DAY:
        rows = (
            await rollups.filter(dimension=Dimension.ALL)
            .annotate(total=Sum("count"))
            .group_by("bucket", "name")
            .values_list("bucket", "name", "total")
        )
        days = {day: Group(day) for day in window.days()}
        for bucket, name, total in rows:
            day = _as_moment(bucket).date().isoformat()
            group = days.setdefault(day, Group(day))
            group.counts[str(name)] = group.counts.get(str(name), 0) + int(total)
        return sorted(days.values(), key=lambda group: group.key or ""), False
    rows = (
        await rollups.filter(dimension=Dimension(group_by.value))
        .annotate(total=Sum("count"))
        .group_by("value", "name")
        .values_list("value", "name", "total")
    )
    by_value: dict[str, Group] = {}
    for value, name, total in rows:
        group = by_value.setdefault(str(value), Group(str(value) or None))
        group.counts[str(name)] = int(total)
    ordered = sorted(by_value.values(), key=lambda group: (-group.events, group.key or ""))
    return ordered[:MAX_GROUPS], len(ordered) > MAX_GROUPS


def _as_moment(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(UTC)


async def _deliveries(project_id: str, mode: KeyMode, window: Window) -> dict[str, int]:
    attempted = Delivery.filter(
        push__project_id=project_id, push__mode=mode, status__in=ATTEMPTED,
        created_at__gte=window.start, created_at__lt=window.end,
    )  # fmt: skip
    rows = (
        await attempted.annotate(count=Count("id"))
        .group_by("status")
        .values_list("status", "count")
    )
    counts = {status.value: 0 for status in ATTEMPTED}
    counts.update({str(status): int(count) for status, count in rows})
    return counts


# --- raw events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Which raw events a list or an export reads; every field optional."""

    name: str | None = None
    device_id: str | None = None
    user_id: str | None = None
    widget: str | None = None
    push_id: str | None = None
    platform: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: QuerySet[AnalyticsEvent]) -> QuerySet[AnalyticsEvent]:
        exact = {
            name: getattr(self, name)
            for name in ("name", "device_id", "user_id", "widget", "push_id", "platform")
            if getattr(self, name) is not None
        }
        if exact:
            query = query.filter(**exact)
        if self.since is not None:
            query = query.filter(occurred_at__gte=self.since)
        if self.until is not None:
            query = query.filter(occurred_at__lt=self.until)
        return query


async def page(
    events: QuerySet[AnalyticsEvent], limit: int, after: AnalyticsEvent | None
) -> tuple[list[AnalyticsEvent], bool]:
    """Newest first, ``limit`` of them after the event ``after``; and whether more follow."""
    if after is not None:
        events = events.filter(
            Q(occurred_at__lt=after.occurred_at) | Q(occurred_at=after.occurred_at, id__lt=after.id)
        )
    rows = await events.order_by("-occurred_at", "-id").limit(limit + 1)
    return rows[:limit], len(rows) > limit


async def oldest_first(
    events: QuerySet[AnalyticsEvent], chunk: int = CSV_CHUNK
) -> AsyncIterator[list[AnalyticsEvent]]:
    """Every event of ``events``, oldest first, ``chunk`` rows a query (no long transaction:
    each query stands alone, the next continuing after the last row seen)."""
    last: AnalyticsEvent | None = None
    while True:
        query = events
        if last is not None:
            at = last.occurred_at
            query = query.filter(Q(occurred_at__gt=at) | Q(occurred_at=at, id__gt=last.id))
        rows = await query.order_by("occurred_at", "id").limit(chunk)
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        last = rows[-1]
