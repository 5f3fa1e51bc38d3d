"""The delivery rows a run holds: a row is claimed by one run at a time, ended only by the run
holding it, and its push completed only once none of its deliveries is open — on PostgreSQL's
hand-written statements and SQLite's ORM ones alike."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.models import (
    Delivery,
    DeliveryStatus,
    Device,
    KeyMode,
    Platform,
    Push,
    PushStatus,
)
from tests.support.tenants import make_tenant
from workers.delivery_rows import claim, complete, end

pytestmark = pytest.mark.database

LEASE_SECONDS = 30.0


async def push_to(devices: int, status: PushStatus = PushStatus.QUEUED) -> tuple[Push, list[str]]:
    """A push to ``devices`` iOS devices of their own; the push and its deliveries' ids."""
    tenant = await make_tenant(f"Acme {uuid.uuid4().hex[:8]}", roles=())
    push = await Push.create(
        project=tenant.project, mode=KeyMode.LIVE, kind="alert", content={}, target={},
        status=status, recipients=devices,
    )  # fmt: skip
    ids = []
    for n in range(devices):
        device = await Device.create(
            project=tenant.project, mode=KeyMode.LIVE, platform=Platform.IOS,
            token_hash=uuid.uuid4().hex * 2, token_encrypted=f"sealed token {n}",
            token_last_four=f"{n:04d}",
        )  # fmt: skip
        delivery = await Delivery.create(
            push=push, device=device, provider="apns", platform="ios", apns_id=str(uuid.uuid4())
        )
        ids.append(delivery.id)
    return push, ids


async def test_a_claim_holds_the_rows_and_reads_what_sending_needs_from_the_device(
    database: None,
) -> None:
    push, ids = await push_to(2)
    now = datetime.now(UTC)
    rows = await claim(ids, [push.id], now, "lease-a", LEASE_SECONDS)
    assert sorted(row.id for row in rows) == sorted(ids)
    assert {row.token_encrypted for row in rows} == {"sealed token 0", "sealed token 1"}
    assert {(row.attempts, row.device_status, row.push_id) for row in rows} == {
        (1, "active", push.id)
    }
    held = await Delivery.filter(id__in=ids).values_list("status", "lease_token", "lease_until")
    assert {(status, lease) for status, lease, _ in held} == {(DeliveryStatus.SENDING, "lease-a")}
    assert all(abs((until - now).total_seconds() - LEASE_SECONDS) < 1 for *_, until in held)


async def test_rows_held_by_one_run_are_claimed_by_another_only_once_the_lease_ran_out(
    database: None,
) -> None:
    push, ids = await push_to(1)
    now = datetime.now(UTC)
    assert len(await claim(ids, [push.id], now, "lease-a", LEASE_SECONDS)) == 1
    assert await claim(ids, [push.id], now + timedelta(seconds=1), "lease-b", LEASE_SECONDS) == []
    later = now + timedelta(seconds=LEASE_SECONDS + 1)
    [taken] = await claim(ids, [push.id], later, "lease-b", LEASE_SECONDS)
    assert taken.attempts == 2
    # The first run, back too late, can no longer end the row: the second holds it.
    await end(ids, "lease-a", DeliveryStatus.DELIVERED, None, later)
    assert await Delivery.get(id=ids[0]).values_list("status", "lease_token") == (
        DeliveryStatus.SENDING, "lease-b",
    )  # fmt: skip


async def test_a_row_not_due_yet_and_a_canceled_pushs_rows_are_not_claimed(
    database: None,
) -> None:
    waiting, waiting_ids = await push_to(1)
    now = datetime.now(UTC)
    await Delivery.filter(id__in=waiting_ids).update(next_attempt_at=now + timedelta(seconds=60))
    canceled, canceled_ids = await push_to(1, status=PushStatus.CANCELED)
    assert await claim(waiting_ids, [waiting.id], now, "lease-a", LEASE_SECONDS) == []
    assert await claim(canceled_ids, [canceled.id], now, "lease-a", LEASE_SECONDS) == []
    assert await Delivery.filter(
        id__in=waiting_ids + canceled_ids, status=DeliveryStatus.QUEUED
    ).count() == 2  # fmt: skip


async def test_a_push_completes_once_none_of_its_deliveries_is_open(database: None) -> None:
    push, ids = await push_to(2)
    now = datetime.now(UTC)
    await claim(ids, [push.id], now, "lease-a", LEASE_SECONDS)
    await end(ids[:1], "lease-a", DeliveryStatus.DELIVERED, None, now)
    assert await complete([push.id], now) == 0
    assert (await Push.get(id=push.id)).status is PushStatus.QUEUED
    await end(ids[1:], "lease-a", DeliveryStatus.FAILED, "the device is gone", now)
    assert await complete([push.id], now) == 1
    assert await complete([push.id], now) == 0  # once
    completed = await Push.get(id=push.id)
    assert completed.status is PushStatus.COMPLETED
    assert completed.completed_at is not None
    ended = dict(await Delivery.filter(id__in=ids).values_list("id", "status"))
    assert ended == {ids[0]: DeliveryStatus.DELIVERED, ids[1]: DeliveryStatus.FAILED}
    reason = await Delivery.get(id=ids[1]).values_list("reason", "lease_token", "completed_at")
    assert reason[:2] == ("the device is gone", None)
    assert reason[2] is not None
