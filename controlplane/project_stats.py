"""A project's health at a glance, in one mode: what the dashboard's overview shows.

Counts of the project's own rows only (every query filters on the project and the mode), over
bounded windows: pushes since midnight and since the month began (UTC), deliveries of the last
24 hours, devices and open Live Activities now, and the latest delivery failures with their
reasons — the questions an admin opening the dashboard asks first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tortoise.functions import Count

from controlplane.models import (
    OPEN_ACTIVITY_STATUSES,
    Activity,
    Delivery,
    DeliveryStatus,
    Device,
    DeviceStatus,
    KeyMode,
    Push,
)

WINDOW = timedelta(hours=24)
LAST_ERRORS = 10
PENDING = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.RATE_LIMITED)
# Outcomes a success rate is computed over: a canceled or superseded delivery was not tried.
ATTEMPTED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.INVALID_TOKEN)


@dataclass(frozen=True)
class FailedDelivery:
    delivery_id: str
    push_id: str
    status: DeliveryStatus
    provider: str
    reason: str | None
    at: datetime


@dataclass
class ProjectStats:
    pushes_today: int = 0
    pushes_this_month: int = 0
    deliveries_24h: dict[str, int] = field(default_factory=dict)
    pending_deliveries: int = 0
    devices: dict[str, int] = field(default_factory=dict)
    open_activities: int = 0
    last_errors: list[FailedDelivery] = field(default_factory=list)

    @property
    def success_rate_24h(self) -> float | None:
        attempted = sum(self.deliveries_24h.get(status.value, 0) for status in ATTEMPTED)
        if attempted == 0:
            return None
        return self.deliveries_24h.get(DeliveryStatus.DELIVERED.value, 0) / attempted


async def project_stats(
    project_id: str, mode: KeyMode, now: datetime | None = None
) -> ProjectStats:
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = midnight.replace(day=1)
    pushes = Push.filter(project_id=project_id, mode=mode)
    deliveries = Delivery.filter(push__project_id=project_id, push__mode=mode)
    stats = ProjectStats(
        pushes_today=await pushes.filter(created_at__gte=midnight).count(),
        pushes_this_month=await pushes.filter(created_at__gte=month).count(),
        pending_deliveries=await deliveries.filter(status__in=PENDING).count(),
        open_activities=await Activity.filter(
            project_id=project_id, mode=mode, status__in=OPEN_ACTIVITY_STATUSES
        ).count(),
    )
    recent = (
        await deliveries.filter(created_at__gte=now - WINDOW)
        .annotate(count=Count("id"))
        .group_by("status")
        .values_list("status", "count")
    )
    stats.deliveries_24h = {str(status): int(count) for status, count in recent}
    by_status = (
        await Device.filter(project_id=project_id, mode=mode)
        .annotate(count=Count("id"))
        .group_by("status")
        .values_list("status", "count")
    )
    stats.devices = {status.value: 0 for status in DeviceStatus}
    stats.devices.update({str(status): int(count) for status, count in by_status})
    failed = (
        await deliveries.filter(
            status__in=(DeliveryStatus.FAILED, DeliveryStatus.INVALID_TOKEN),
            created_at__gte=now - WINDOW,
        )
        .order_by("-completed_at", "-id")
        .limit(LAST_ERRORS)
        .values("id", "push_id", "status", "provider", "reason", "completed_at", "created_at")
    )
    stats.last_errors = [
        FailedDelivery(
            delivery_id=row["id"],
            push_id=row["push_id"],
            status=DeliveryStatus(row["status"]),
            provider=row["provider"],
            reason=row["reason"],
            at=row["completed_at"] or row["created_at"],
        )
        for row in failed
    ]
    return stats
