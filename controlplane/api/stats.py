"""``GET /v1/stats``: the project's health at a glance, in the key's mode.

Pushes today and this month, the last 24 hours of deliveries by outcome and their success
rate, deliveries waiting to go (the project's share of the queue), devices by status, open
Live Activities, and the latest failures with the provider's reason
(``controlplane/project_stats.py``). The dashboard's overview is this answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from controlplane.api.routing import Auth, Call, Operation
from controlplane.models import DeliveryStatus, KeyMode
from controlplane.project_stats import project_stats


class RecentFailure(BaseModel):
    delivery_id: str
    push_id: str
    status: DeliveryStatus
    provider: str
    reason: str | None
    at: datetime


class Stats(BaseModel):
    object: Literal["stats"] = "stats"
    project_id: str
    mode: KeyMode
    pushes_today: int = Field(description="Pushes accepted since 00:00 UTC.")
    pushes_this_month: int = Field(description="Pushes accepted since the month began (UTC).")
    deliveries_24h: dict[str, int] = Field(
        description="Deliveries created in the last 24 hours, by status."
    )
    delivery_success_rate_24h: float | None = Field(
        description="Delivered ÷ (delivered + failed + invalid_token) over the last 24 hours; "
        "null when none was attempted."
    )
    pending_deliveries: int = Field(
        description="Deliveries queued, sending or waiting out a provider's rate limit now."
    )
    devices: dict[str, int] = Field(description="Devices by status (active, invalid).")
    open_activities: int = Field(description="Live Activities starting, active or stale.")
    recent_failures: list[RecentFailure] = Field(
        description="The latest failed deliveries of the last 24 hours, newest first (10)."
    )


async def retrieve_stats(call: Call) -> Stats:
    assert call.tenant.project is not None
    assert call.tenant.mode is not None
    stats = await project_stats(call.tenant.project.id, call.tenant.mode)
    return Stats(
        project_id=call.tenant.project.id,
        mode=call.tenant.mode,
        pushes_today=stats.pushes_today,
        pushes_this_month=stats.pushes_this_month,
        deliveries_24h=stats.deliveries_24h,
        delivery_success_rate_24h=stats.success_rate_24h,
        pending_deliveries=stats.pending_deliveries,
        devices=stats.devices,
        open_activities=stats.open_activities,
        recent_failures=[
            RecentFailure(
                delivery_id=failure.delivery_id,
                push_id=failure.push_id,
                status=failure.status,
                provider=failure.provider,
                reason=failure.reason,
                at=failure.at,
            )
            for failure in stats.last_errors
        ],
    )


operations = [
    Operation(
        "GET",
        "/v1/stats",
        retrieve_stats,
        "The project's health at a glance: pushes, delivery success, devices, failures",
        "Usage",
        auth=Auth.API_KEY,
        scope="pushes:read",
        secret_key_only=True,
        response=Stats,
    ),
]
