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

from tortoise.expressions import Q, Subquery

from controlplane import idempotency
from controlplane.core.queue import enqueue_deliveries
from controlplane.models import Delivery, DeliveryStatus, Push, PushStatus
from workers.delivery_rows import OPEN_STATUSES
from workers.tasks.deliver import complete_finished

MAX_ROWS_PER_RUN = 100_000
MAX_PUSHES_PER_RUN = 1_000  # finished pushes completed per run, oldest first


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


async def complete_left_open(now: datetime, grace_seconds: float) -> int:
    """Complete the pushes still ``queued`` or ``sending`` past the grace whose deliveries have
    all ended: a worker stopped between recording a push's last deliveries and completing it
    leaves it so, and no delivery is left for anyone to pick up. Returns how many.

    The query asks for pushes with no open delivery, oldest first: a backlog of pushes still
    legitimately moving (retries waiting out an outage) never hides one that is finished."""
    overdue = now - timedelta(seconds=grace_seconds)
    moving = [PushStatus.QUEUED, PushStatus.SENDING]
    client = Push._meta.db
    if client.capabilities.dialect == "postgres":
        # NOT EXISTS, through the (push_id, status) index: a NOT IN over every open delivery
        # of a fan-out in progress would be a scan per push once it outgrows work_mem.
        rows = await client.execute_query_dict(_LEFT_OPEN, [
            [status.value for status in moving], overdue,
            [status.value for status in OPEN_STATUSES], MAX_PUSHES_PER_RUN,
        ])  # fmt: skip
        finished = [str(row["id"]) for row in rows]
    else:
        open_deliveries = Delivery.filter(status__in=OPEN_STATUSES).values("push_id")
        finished = [
            str(push_id)
            for push_id in await Push.filter(status__in=moving, created_at__lte=overdue)
            .exclude(id__in=Subquery(open_deliveries))
            .order_by("created_at").limit(MAX_PUSHES_PER_RUN).values_list("id", flat=True)
        ]  # fmt: skip
    return await complete_finished(finished) if finished else 0


# Pushes still moving past the grace with no open delivery: finished, left open.
_LEFT_OPEN = """
SELECT p."id" FROM "pushes" AS p
WHERE p."status" = ANY($1::text[]) AND p."created_at" <= $2
    AND NOT EXISTS (SELECT 1 FROM "deliveries" AS d
                    WHERE d."push_id" = p."id" AND d."status" = ANY($3::text[]))
ORDER BY p."created_at" LIMIT $4
"""


async def scheduled_reconcile(ctx: dict[str, Any]) -> int:
    settings = ctx["settings"]
    await complete_left_open(datetime.now(UTC), settings.reconcile_grace_seconds)
    return await reconcile_deliveries(ctx)


async def delete_expired_idempotency_keys(ctx: dict[str, Any]) -> int:
    return await idempotency.delete_expired()
