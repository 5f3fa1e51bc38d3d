"""Loading buffered analytics events into PostgreSQL, and purging what is past retention.

Every ``BRIK_ANALYTICS_LOAD_EVERY_SECONDS`` each worker drains what the Redis buffer holds
(``controlplane/analytics/loading.py``), for at most that long, so a busy buffer keeps one
loader per worker going rather than piling up runs; several workers share the stream through
its consumer group. Once a minute the purge deletes raw events past their plan's retention
and rollups past theirs (``controlplane/analytics/retention.py``), and forgets consumers of
workers long gone.
"""

from __future__ import annotations

from typing import Any

from controlplane.analytics.buffer import EventBuffer
from controlplane.analytics.loading import load_pending
from controlplane.analytics.retention import purge_expired
from controlplane.settings import Settings

FORGET_CONSUMERS_AFTER_MS = 24 * 3600 * 1000


async def scheduled_analytics_load(ctx: dict[str, Any]) -> int:
    """Load what the buffer holds; returns how many events were new."""
    settings: Settings = ctx["settings"]
    buffer: EventBuffer = ctx["event_buffer"]
    loaded = await load_pending(
        buffer, ctx["worker_id"], claim_idle_seconds=settings.analytics_claim_idle_seconds,
        time_budget_seconds=settings.analytics_load_every_seconds,
    )  # fmt: skip
    metrics = ctx.get("metrics")
    if metrics is not None:
        for outcome in ("inserted", "duplicates", "dropped"):
            if count := getattr(loaded, outcome):
                metrics.analytics_events.labels(outcome.removesuffix("s")).inc(count)
        _batches, size = await buffer.backlog()
        metrics.analytics_backlog.set(size)
    return loaded.inserted


async def scheduled_analytics_purge(ctx: dict[str, Any]) -> int:
    """Purge raw events and rollups past retention; returns how many rows went."""
    purged = await purge_expired(ctx["settings"])
    await ctx["event_buffer"].forget_idle_consumers(FORGET_CONSUMERS_AFTER_MS)
    return purged
