"""The heartbeat job: the smallest real unit of work, used to prove the pipeline end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from controlplane.models import WorkerHeartbeat


async def heartbeat(ctx: dict[str, Any], probe_id: str) -> tuple[str, int]:
    """Count a beat for this worker in the database; returns ``(worker_id, beats)``.

    Concurrent beats of one worker (a probe and the cron job) are safe: the increment happens
    in SQL, and a lost race to create the row falls back to the increment.
    """
    worker_id: str = ctx["worker_id"]
    now = datetime.now(UTC)
    rows = WorkerHeartbeat.filter(worker_id=worker_id)
    beat = {"last_probe_id": probe_id, "beats": F("beats") + 1, "last_seen_at": now}
    if not await rows.update(**beat):
        try:
            await WorkerHeartbeat.create(
                worker_id=worker_id, last_probe_id=probe_id, beats=1, last_seen_at=now
            )
        except IntegrityError:
            await rows.update(**beat)
    row = await WorkerHeartbeat.get(worker_id=worker_id)
    metrics = ctx.get("metrics")
    if metrics is not None:
        metrics.heartbeat.set_to_current_time()
    return worker_id, row.beats


async def scheduled_heartbeat(ctx: dict[str, Any]) -> tuple[str, int]:
    """Once a minute, so the table shows every live worker even with no traffic."""
    return await heartbeat(ctx, "cron")
