"""Never twice: duplicated jobs, a flushed Redis and an expired lease each send a device once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.app import create_app
from controlplane.models import Delivery, DeliveryStatus, Push, PushStatus
from controlplane.settings import Settings
from tests.support.apple import SigningKey, apns_credential
from tests.support.servers import running_worker, serving, worker_context
from tests.support.tenants import live_key_headers, make_tenant
from workers.fakes.apns import FakeAPNs
from workers.tasks.deliver import deliver_batch
from workers.tasks.reconcile import complete_left_open, reconcile_deliveries

pytestmark = pytest.mark.database

DEVICES = 40


@pytest.fixture
def live_settings(make_settings: Callable[..., Settings], apns_fake: FakeAPNs) -> Settings:
    return make_settings(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        delivery_retry_base_seconds=0.05, delivery_retry_max_seconds=0.2,
    )  # fmt: skip


@pytest.fixture
async def accepted_push(
    live_settings: Settings, signing_key: SigningKey, database: None
) -> tuple[str, list[str]]:
    """A live push to DEVICES iOS devices, accepted by the API with no worker running."""
    acme = await make_tenant("Acme")
    auth = await live_key_headers(acme)
    async with serving(create_app(live_settings)) as url, httpx.AsyncClient(base_url=url) as api:
        await api.put("/v1/credentials/apns", json=apns_credential(signing_key), headers=auth)
        for n in range(DEVICES):
            await api.post("/v1/devices", json={"token": f"{n + 1:064x}", "platform": "ios",
                                                "tags": ["all"]}, headers=auth)  # fmt: skip
        accepted = await api.post(
            "/v1/pushes", json={"kind": "alert", "alert": {"title": "Once"},
                                "to": {"tags": ["all"]}}, headers=auth)  # fmt: skip
    push_id = accepted.json()["id"]
    ids = [str(i) for i in await Delivery.filter(push_id=push_id).values_list("id", flat=True)]
    return push_id, ids


@pytest.fixture
async def worker_ctx(live_settings: Settings) -> AsyncIterator[dict[str, Any]]:
    async with worker_context(live_settings) as ctx:
        yield ctx


async def wait_completed(push_id: str) -> None:
    deadline = time.monotonic() + 60
    while (await Push.get(id=push_id)).status is not PushStatus.COMPLETED:
        assert time.monotonic() < deadline, "the push never completed"
        await asyncio.sleep(0.05)


async def test_duplicated_jobs_send_each_device_once(
    accepted_push: tuple[str, list[str]], worker_ctx: dict[str, Any], apns_fake: FakeAPNs
) -> None:
    push_id, ids = accepted_push
    results = await asyncio.gather(*(deliver_batch(worker_ctx, push_id, ids) for _ in range(4)))
    assert sum(result.get("delivered", 0) for result in results) == DEVICES
    assert len(apns_fake.deliveries_per_device()) == DEVICES
    assert set(apns_fake.deliveries_per_device().values()) == {1}
    assert len(apns_fake.received) == DEVICES
    # A late, retried job finds nothing to do.
    assert await deliver_batch(worker_ctx, push_id, ids) == {}
    assert (await Push.get(id=push_id)).status is PushStatus.COMPLETED


async def test_a_flushed_redis_loses_nothing(
    accepted_push: tuple[str, list[str]],
    worker_ctx: dict[str, Any],
    live_settings: Settings,
    apns_fake: FakeAPNs,
) -> None:
    push_id, _ = accepted_push
    redis = Redis.from_url(live_settings.redis_url)
    await redis.flushdb()  # every enqueued job is gone
    await redis.aclose()
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert await reconcile_deliveries(worker_ctx, now=later) == DEVICES
    async with running_worker(live_settings):
        await wait_completed(push_id)
    assert len(apns_fake.deliveries_per_device()) == DEVICES
    assert set(apns_fake.deliveries_per_device().values()) == {1}


@pytest.mark.faults
async def test_rows_of_a_dead_worker_are_taken_over_when_its_lease_expires(
    accepted_push: tuple[str, list[str]],
    worker_ctx: dict[str, Any],
    live_settings: Settings,
    apns_fake: FakeAPNs,
) -> None:
    push_id, ids = accepted_push
    past = datetime.now(UTC) - timedelta(seconds=1)
    # A worker claimed half the rows and died before sending them.
    await Delivery.filter(id__in=ids[: DEVICES // 2]).update(
        status=DeliveryStatus.SENDING, lease_token="dead-worker", lease_until=past, attempts=1
    )
    redis = Redis.from_url(live_settings.redis_url)
    await redis.flushdb()
    await redis.aclose()
    assert await reconcile_deliveries(worker_ctx, now=datetime.now(UTC) + timedelta(minutes=2))
    async with running_worker(live_settings):
        await wait_completed(push_id)
    assert len(apns_fake.deliveries_per_device()) == DEVICES
    taken_over = await Delivery.filter(id__in=ids[: DEVICES // 2]).values_list(
        "attempts", flat=True
    )
    assert set(taken_over) == {2}


async def test_a_push_left_open_after_its_last_delivery_was_recorded_is_completed(
    accepted_push: tuple[str, list[str]],
) -> None:
    push_id, ids = accepted_push
    # A worker recorded every delivery and was stopped before completing the push: no delivery
    # is left for anyone to pick up, so only the reconciler can see it through.
    await Delivery.filter(id__in=ids).update(status=DeliveryStatus.DELIVERED)
    assert (await Push.get(id=push_id)).status is PushStatus.QUEUED
    assert await complete_left_open(datetime.now(UTC), grace_seconds=60) == 0  # not overdue yet
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert await complete_left_open(later, grace_seconds=60) == 1
    assert (await Push.get(id=push_id)).status is PushStatus.COMPLETED
    # One still moving is left alone.
    await Push.filter(id=push_id).update(status=PushStatus.SENDING)
    await Delivery.filter(id=ids[0]).update(status=DeliveryStatus.QUEUED)
    assert await complete_left_open(later, grace_seconds=60) == 0
    assert (await Push.get(id=push_id)).status is PushStatus.SENDING
