"""The reconciler's completion of pushes left open: a finished push is completed however many
older pushes are still moving."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.models import Delivery, DeliveryStatus, KeyMode, Push, PushStatus
from tests.support.tenants import make_tenant
from workers.tasks.reconcile import MAX_PUSHES_PER_RUN, complete_left_open

pytestmark = pytest.mark.database

CONTENT = {"kind": "alert", "alert": {"title": "Order shipped"}}


async def pushes(project_id: str, n: int, delivery: DeliveryStatus, created: datetime) -> list[str]:
    """``n`` sending pushes of one delivery each in ``delivery``'s status, made at ``created``."""
    made = [Push(project_id=project_id, mode=KeyMode.LIVE, kind="alert", content=CONTENT, target={},
                 status=PushStatus.SENDING, recipients=1) for _ in range(n)]  # fmt: skip
    await Push.bulk_create(made)
    ids = [push.id for push in made]
    await Push.filter(id__in=ids).update(created_at=created)
    await Delivery.bulk_create([
        Delivery(push_id=push_id, provider="apns", platform="ios", status=delivery,
                 apns_id=str(uuid.uuid4()))
        for push_id in ids
    ])  # fmt: skip
    return ids


async def test_a_finished_push_behind_a_backlog_still_moving_is_completed(
    database: None,
) -> None:
    acme = await make_tenant("Acme", roles=())
    now = datetime.now(UTC)
    # More pushes still moving than one run looks at, all older than the finished one.
    moving = await pushes(acme.project.id, MAX_PUSHES_PER_RUN + 1, DeliveryStatus.QUEUED,
                          now - timedelta(hours=2))  # fmt: skip
    [finished] = await pushes(acme.project.id, 1, DeliveryStatus.DELIVERED,
                              now - timedelta(hours=1))  # fmt: skip
    assert await complete_left_open(now, grace_seconds=60) == 1
    assert (await Push.get(id=finished)).status is PushStatus.COMPLETED
    assert await Push.filter(id__in=moving, status=PushStatus.SENDING).count() == len(moving)
    # Within the grace, a finished push is not the reconciler's yet.
    [recent] = await pushes(acme.project.id, 1, DeliveryStatus.DELIVERED, now)
    assert await complete_left_open(now, grace_seconds=60) == 0
    assert (await Push.get(id=recent)).status is PushStatus.SENDING
