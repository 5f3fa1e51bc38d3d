"""The heartbeat job: the smallest real unit of work, used to prove the pipeline end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import F

from controlplane.models import WorkerHeartbeat


async def heartbeat(ctx: dict[str, Any], probe_id: str) -> str:
    """Record that this worker ran ``probe_id``; returns the worker's id."""
    worker_id: str = ctx["worker_id"]
    now = datetime.now(UTC)
    updated = await WorkerHeartbeat.filter(worker_id=worker_id).update(
        last_probe_id=probe_id, beats=F("beats") + 1, last_seen_at=now
    )
    if not updated:
        await WorkerHeartbeat.create(
            worker_id=worker_id, last_probe_id=probe_id, beats=1, last_seen_at=now
        )
    return worker_id


async def scheduled_heartbeat(ctx: dict[str, Any]) -> str:
    """Once a minute, so the table shows every live worker even with no traffic."""
    return await heartbeat(ctx, "cron")
