"""Deleting a project (or an organization's projects) while its pushes may be going out.

One cascading ``DELETE FROM projects`` used to do it, in one transaction: PostgreSQL then
locked the project's delivery rows in its own order while workers' UPDATEs locked the same rows
in theirs, and one of them died with ``deadlock detected`` — often the deletion (a 500, the
project still there, its keys still working). So a deletion now goes in steps, each holding
few locks, always taken in the same order (project, then its keys, then its pushes; never a
delivery row while a worker could want it):

1. :func:`retire` — one short transaction, the caller's (which also tells every API process to
   forget cached keys, ``controlplane/api/routing.py``): lock the project row, revoke its keys,
   disable its webhook endpoints (no event is written for it any more), cancel its open
   pushes. From its commit no key of the project is accepted, and no delivery
   of those pushes is claimed again: a worker's claim locks its push row first and skips a
   canceled push (``workers/tasks/deliver.py``).
2. :func:`finish` — wait until the sends that workers had claimed before that commit are
   recorded (at most one chunk per job; :data:`SEND_WAIT_SECONDS` at most), so nothing of the
   project is on its way out once the deletion answers; then delete the rows in batches
   (deliveries, pushes, devices, state entries — these giving their bytes back to the
   organization's plan — analytics events and rollups, and webhook deliveries, events and
   endpoints), each batch its own short
   statement; then, in a last short
   transaction that locks the project again, delete the project with what is left (keys,
   credentials, idempotency records). A push created meanwhile by a request that was already
   past authentication is canceled there and the steps repeat.

If the process stops half way, the project stays retired — keys revoked, pushes canceled —
and visible; deleting it again carries on where it stopped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from tortoise.expressions import Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from controlplane import state
from controlplane.models import (
    AnalyticsEvent,
    AnalyticsRollup,
    ApiKey,
    Delivery,
    DeliveryStatus,
    Device,
    Project,
    Push,
    PushStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from controlplane.push_locks import in_id_order

logger = logging.getLogger("brik.project_deletion")
ModelT = TypeVar("ModelT", bound=Model)

OPEN_PUSH_STATUSES = (PushStatus.SCHEDULED, PushStatus.QUEUED, PushStatus.SENDING)
SEND_WAIT_SECONDS = 30.0
SEND_POLL_SECONDS = 0.05
PURGE_BATCH = 1000
MAX_ROUNDS = 10  # late pushes come only from requests already past authentication: a few
DEADLOCK = "40P01"


async def retire(project_id: str) -> list[str]:
    """Revoke the project's keys and cancel its open pushes; returns the canceled push ids.

    Call it inside a transaction. Locks the project row first, so a request that is creating
    a push or a device for it finishes before, or waits until after, this commit.
    """
    await Project.select_for_update().filter(id=project_id).first()
    now = datetime.now(UTC)
    await ApiKey.filter(project_id=project_id, revoked_at__isnull=True).update(revoked_at=now)
    await WebhookEndpoint.filter(project_id=project_id, enabled=True).update(
        enabled=False, disabled_reason="the project is being deleted", disabled_at=now
    )
    return await _cancel_open_pushes(project_id, now)


async def retire_all(organization_id: str) -> dict[str, list[str]]:
    """:func:`retire` every project of an organization, in id order (the one lock order)."""
    project_ids = (
        await Project.filter(organization_id=organization_id)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return {str(project_id): await retire(str(project_id)) for project_id in project_ids}


async def _cancel_open_pushes(project_id: str, now: datetime) -> list[str]:
    open_pushes = Push.filter(project_id=project_id, status__in=OPEN_PUSH_STATUSES)
    push_ids = [str(push_id) for push_id in await open_pushes.values_list("id", flat=True)]
    if push_ids:
        # Locked in id order, as a worker's claim locks them: the two cannot deadlock.
        locked = in_id_order(Push.filter(id__in=push_ids, status__in=OPEN_PUSH_STATUSES))
        await Push.filter(id__in=locked).update(
            status=PushStatus.CANCELED, canceled_at=now, completed_at=now
        )
    return push_ids


async def finish(project_id: str, canceled: list[str]) -> None:
    """Everything after :func:`retire` has committed: see the module docstring."""
    for _ in range(MAX_ROUNDS):
        await wait_for_sends(canceled)
        await purge(project_id)
        async with in_transaction():
            project = await Project.select_for_update().filter(id=project_id).first()
            if project is None:
                return
            canceled = await _cancel_open_pushes(project_id, datetime.now(UTC))
            if not canceled:
                await state.purge_project(project_id)  # any a late request wrote: few, if any
                await project.delete()  # keys, credentials, idempotency records: few rows
                return
    raise RuntimeError(f"project {project_id} kept getting new pushes while being deleted")


async def wait_for_sends(push_ids: list[str], patience: float = SEND_WAIT_SECONDS) -> bool:
    """Wait until no delivery of ``push_ids`` is being sent; False if ``patience`` ran out.

    A row stays ``sending`` until its worker records the provider's answer; a worker that died
    leaves it so until its lease ends, and it is never sent again (its push is canceled).
    """
    if not push_ids:
        return True
    if await wait_until_sent(Delivery.filter(push_id__in=push_ids), patience):
        return True
    logger.warning("deleting pushes %s while some are still being sent", push_ids)
    return False


async def wait_until_sent(
    deliveries: QuerySet[Delivery], patience: float = SEND_WAIT_SECONDS
) -> bool:
    """Wait until none of ``deliveries`` is being sent under a live lease; False if
    ``patience`` ran out first. (An end user's erase waits on their devices' deliveries the
    same way: ``controlplane/exports/user_data.py``.)"""
    deadline = time.monotonic() + patience
    while True:
        sending = deliveries.filter(
            status=DeliveryStatus.SENDING, lease_until__gt=datetime.now(UTC)
        )
        if not await sending.exists():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(SEND_POLL_SECONDS)


async def purge(project_id: str) -> None:
    """Delete the project's deliveries, pushes, devices, state entries, analytics events and
    rollups and webhooks, :data:`PURGE_BATCH` at a time (the entries' bytes go back to the
    organization's plan)."""
    pushes = Subquery(Push.filter(project_id=project_id).values("id"))
    await delete_in_batches(Delivery, Delivery.filter(push_id__in=pushes))
    await delete_in_batches(Push, Push.filter(project_id=project_id))
    await delete_in_batches(Device, Device.filter(project_id=project_id))
    await state.purge_project(project_id, batch=PURGE_BATCH)
    await delete_in_batches(AnalyticsEvent, AnalyticsEvent.filter(project_id=project_id))
    await delete_in_batches(AnalyticsRollup, AnalyticsRollup.filter(project_id=project_id))
    await delete_in_batches(WebhookDelivery, WebhookDelivery.filter(project_id=project_id))
    await delete_in_batches(WebhookEvent, WebhookEvent.filter(project_id=project_id))
    await delete_in_batches(WebhookEndpoint, WebhookEndpoint.filter(project_id=project_id))


async def delete_in_batches(model: type[ModelT], rows: QuerySet[ModelT]) -> int:
    """Delete ``rows``, :data:`PURGE_BATCH` per statement; returns how many went (counted by
    their ids: what a DELETE reports on SQLite includes the rows its cascades took)."""
    deleted = 0
    while True:
        ids = await rows.limit(PURGE_BATCH).values_list("id", flat=True)
        if not ids:
            return deleted
        deleted += len(ids)
        await retrying(model.filter(id__in=list(ids)).delete)


async def update_in_batches(model: type[ModelT], rows: QuerySet[ModelT], **values: Any) -> int:
    """Set ``values`` on ``rows``, :data:`PURGE_BATCH` per statement; returns how many changed.

    ``rows`` must stop matching a row once it is updated (filter on what the update changes),
    or this never ends.
    """
    updated = 0
    while True:
        ids = await rows.limit(PURGE_BATCH).values_list("id", flat=True)
        if not ids:
            return updated
        batch = model.filter(id__in=list(ids))
        updated += await retrying(functools.partial(batch.update, **values))


async def retrying(statement: Callable[[], Awaitable[int]]) -> int:
    """Run a purge statement again if PostgreSQL picked it as a deadlock's victim.

    Nothing but a worker stuck past :data:`SEND_WAIT_SECONDS` still writes these rows, so this
    is a last resort; a batch deleted twice is simply a batch deleted.
    """
    for attempt in range(1, 4):
        try:
            return await statement()
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != DEADLOCK or attempt == 3:
                raise
            logger.warning("purge statement hit a deadlock; trying again")
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")
