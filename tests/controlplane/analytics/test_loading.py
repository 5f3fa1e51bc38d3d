"""Loading on a bad day: a loader that dies after its commit but before it acknowledged, or is
cancelled inside its transaction, loses nothing and counts nothing twice; events of a project
deleted meanwhile are dropped, not retried forever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from controlplane.analytics.buffer import EventBuffer
from controlplane.analytics.loading import load_pending, store
from controlplane.models import AnalyticsEvent, AnalyticsRollup, Project
from tests.support.analytics import (
    append,
    counted,
    event_buffer,
    impression,
    lock_rollups,
    wait_for_a_blocked_upsert,
)
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


@pytest.fixture
async def buffer(redis_url: str, clean_redis: None) -> AsyncIterator[EventBuffer]:
    redis = Redis.from_url(redis_url)
    yield event_buffer(redis)
    await redis.aclose()


async def test_a_batch_committed_but_never_acknowledged_is_loaded_again_and_counted_once(
    buffer: EventBuffer, database: None
) -> None:
    tenant = await make_tenant("Acme", roles=())
    await append(buffer, tenant.project.id, [impression(platform="ios") for _ in range(20)])
    await append(buffer, tenant.project.id, [impression(platform="android") for _ in range(5)])
    # The worst moment to die: the events are committed, the acknowledgement never sent.
    taken = await buffer.take("doomed-worker", count=10, claim_idle_ms=60_000)
    assert (await store(taken)).inserted == 25
    assert await buffer.backlog() != (0, 0)  # still pending under the dead worker's name

    # Nobody else takes an entry another worker holds, until it has been idle long enough.
    early = await load_pending(buffer, "survivor", claim_idle_seconds=60)
    assert early.batches == 0
    await asyncio.sleep(0.05)
    again = await load_pending(buffer, "survivor", claim_idle_seconds=0.01)
    assert (again.batches, again.inserted, again.duplicates) == (2, 0, 25)
    assert await AnalyticsEvent.filter(project_id=tenant.project.id).count() == 25
    assert await counted(tenant.project.id) == 25
    platforms = dict(
        await AnalyticsRollup.filter(
            project_id=tenant.project.id, granularity="day", dimension="platform"
        ).values_list("value", "count")
    )
    assert platforms == {"ios": 20, "android": 5}
    assert await buffer.backlog() == (0, 0)


@pytest.mark.postgres_only
async def test_a_load_cancelled_inside_its_transaction_leaves_nothing_behind(
    buffer: EventBuffer, database: None, database_url: str
) -> None:
    tenant = await make_tenant("Acme", roles=())
    await append(buffer, tenant.project.id, [impression()])
    await load_pending(buffer, "first", claim_idle_seconds=60)
    locker = await lock_rollups(database_url, tenant.project.id)
    try:
        await append(buffer, tenant.project.id, [impression() for _ in range(10)])
        loading = asyncio.create_task(load_pending(buffer, "cancelled", claim_idle_seconds=60))
        await wait_for_a_blocked_upsert(database_url)
        loading.cancel()  # a worker shutting down, or its job timing out, right there
        with contextlib.suppress(asyncio.CancelledError):
            await loading
    finally:
        await locker.execute("ROLLBACK")
        await locker.close()
    assert await AnalyticsEvent.filter(project_id=tenant.project.id).count() == 1
    assert await counted(tenant.project.id) == 1
    await asyncio.sleep(0.05)
    resumed = await load_pending(buffer, "survivor", claim_idle_seconds=0.01)
    assert (resumed.inserted, resumed.duplicates) == (10, 0)
    assert await counted(tenant.project.id) == 11


async def test_events_of_a_deleted_project_are_dropped(buffer: EventBuffer, database: None) -> None:
    tenant = await make_tenant("Acme", roles=())
    gone = await make_tenant("Gone", roles=())
    await append(buffer, tenant.project.id, [impression()])
    await append(buffer, gone.project.id, [impression(), impression()])
    await Project.filter(id=gone.project.id).delete()
    loaded = await load_pending(buffer, "loader", claim_idle_seconds=60)
    assert (loaded.inserted, loaded.dropped) == (1, 2)
    assert await buffer.backlog() == (0, 0)
