"""The reconciler: whatever a lost job left behind is enqueued again, so a 202 is never lost.

Jobs live in Redis; the truth lives in PostgreSQL. If a worker is killed mid-batch, or Redis
is flushed, or an enqueue after the commit never happened, delivery rows stay ``queued`` (or
``sending`` with a lease that runs out). Once a minute this job finds those rows and enqueues
them again. Sending twice is impossible by construction: the delivery job only sends rows it
claims (see :mod:`workers.tasks.deliver`), so a row that is in fact still being worked on, or
was finished meanwhile, is skipped.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q

from controlplane import idempotency
from controlplane.core.queue import enqueue_deliveries
from controlplane.models import Delivery, DeliveryStatus, PushStatus

MAX_ROWS_PER_RUN = 100_000


async def reconcile_deliveries(ctx: dict[str, Any], now: datetime | None = None) -> int:
    """Enqueue every delivery that should be moving and is not; returns how many."""
    now = now or datetime.now(UTC)
    overdue = now - timedelta(seconds=ctx["settings"].reconcile_grace_seconds)
    stuck = (
        Q(status=DeliveryStatus.SENDING, lease_until__lt=now)
        | Q(status=DeliveryStatus.QUEUED, next_attempt_at__lte=overdue)
        | Q(status=DeliveryStatus.QUEUED, next_attempt_at__isnull=True, created_at__lte=overdue)
    )
    live_push = Q(push__status__in=[PushStatus.QUEUED, PushStatus.SENDING]) | Q(
        push__status=PushStatus.SCHEDULED, push__send_at__lte=overdue
    )
    rows = (
        await Delivery.filter(stuck, live_push).limit(MAX_ROWS_PER_RUN).values_list("push_id", "id")
    )
    by_push: dict[str, list[str]] = defaultdict(list)
    for push_id, delivery_id in rows:
        by_push[str(push_id)].append(str(delivery_id))
    stamp = now.strftime("%Y%m%d%H%M%S")
    for push_id, ids in by_push.items():
        await enqueue_deliveries(ctx["redis"], push_id, ids, origin=f"reconcile:{stamp}")
    return len(rows)


async def scheduled_reconcile(ctx: dict[str, Any]) -> int:
    return await reconcile_deliveries(ctx)


async def delete_expired_idempotency_keys(ctx: dict[str, Any]) -> int:
    return await idempotency.delete_expired()
