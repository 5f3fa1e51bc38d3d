"""The one way into the queue: jobs arq's worker runs as its own, each id enqueued once, small
pushes due now in the lane, and an idle worker woken only for work that is due."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus

from controlplane.core.queue import (
    DELIVER_JOB,
    DELIVERY_BATCH_SIZE,
    LANE_MAX_DELIVERIES,
    enqueue_deliveries,
    enqueue_deliveries_of,
    enqueue_export,
    enqueue_webhook_delivery,
    queue_depth,
    wake_channel,
)
from tests.support.queue import lane_entries

QUEUE = "brik-test:queue"


@pytest.fixture
async def arq_redis(redis_url: str, clean_redis: None) -> AsyncIterator[ArqRedis]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE)
    yield pool
    await pool.aclose()


async def test_a_push_s_deliveries_become_jobs_arq_reads_as_its_own(arq_redis: ArqRedis) -> None:
    ids = [f"dlv_{n}" for n in range(DELIVERY_BATCH_SIZE + 2)]
    assert await enqueue_deliveries(arq_redis, "psh_1", ids, origin="accept") == 2
    first = Job("deliver:psh_1:accept:0", arq_redis, _queue_name=QUEUE)
    second = Job("deliver:psh_1:accept:1", arq_redis, _queue_name=QUEUE)
    info = await first.info()
    assert info is not None
    assert (info.function, info.args) == (DELIVER_JOB, ("psh_1", ids[:DELIVERY_BATCH_SIZE]))
    assert abs(info.enqueue_time.timestamp() - time.time()) < 5
    assert await second.status() is JobStatus.queued
    assert (await second.info()).args == ("psh_1", ids[DELIVERY_BATCH_SIZE:])  # type: ignore[union-attr]


async def test_small_pushes_due_now_go_into_the_lane_and_the_rest_to_arq(
    arq_redis: ArqRedis,
) -> None:
    small = [f"dlv_s{n}" for n in range(LANE_MAX_DELIVERIES)]
    large = [f"dlv_l{n}" for n in range(LANE_MAX_DELIVERIES + 1)]
    later = datetime.now(UTC) + timedelta(minutes=5)
    handed = [("psh_small", small), ("psh_one", ["dlv_o"]), ("psh_large", large)]
    assert await enqueue_deliveries_of(arq_redis, handed, origin="accept") == 3
    await enqueue_deliveries(arq_redis, "psh_later", ["dlv_t"], origin="accept", defer_until=later)
    assert await lane_entries(arq_redis, QUEUE) == [("psh_small", small), ("psh_one", ["dlv_o"])]
    queued = await arq_redis.zrange(QUEUE, 0, -1)
    assert sorted(queued) == [b"deliver:psh_large:accept:0", b"deliver:psh_later:accept:0"]
    assert await queue_depth(arq_redis) == 4  # what a worker autoscaler reads


async def test_the_same_handover_twice_is_enqueued_once(arq_redis: ArqRedis) -> None:
    fan_out = [f"dlv_{n}" for n in range(LANE_MAX_DELIVERIES + 1)]  # a job, not the lane
    assert await enqueue_deliveries(arq_redis, "psh_2", fan_out, origin="accept") == 1
    assert await enqueue_deliveries(arq_redis, "psh_2", fan_out, origin="accept") == 1
    assert await arq_redis.zcard(QUEUE) == 1
    assert await enqueue_webhook_delivery(arq_redis, "whd_1", 0)
    assert not await enqueue_webhook_delivery(arq_redis, "whd_1", 0)
    assert await enqueue_webhook_delivery(arq_redis, "whd_1", 0, late="x")
    assert await enqueue_export(arq_redis, "exp_1", 0)
    assert not await enqueue_export(arq_redis, "exp_1", 0)
    assert await arq_redis.zcard(QUEUE) == 4


async def test_an_id_with_a_result_still_kept_is_not_run_again(arq_redis: ArqRedis) -> None:
    await arq_redis.set("arq:result:webhook:whd_2:0", b"done")
    assert not await enqueue_webhook_delivery(arq_redis, "whd_2", 0)
    assert await arq_redis.zcard(QUEUE) == 0


async def test_jobs_due_now_wake_idle_workers_and_deferred_work_and_the_lane_do_not(
    arq_redis: ArqRedis,
) -> None:
    listener = arq_redis.pubsub()
    await listener.subscribe(wake_channel(QUEUE))
    await listener.get_message(timeout=1)  # the subscription's confirmation

    async def rung() -> bool:
        return await listener.get_message(ignore_subscribe_messages=True, timeout=0.5) is not None

    later = datetime.now(UTC) + timedelta(minutes=5)
    await enqueue_deliveries(arq_redis, "psh_3", ["dlv_b"], origin="accept", defer_until=later)
    await enqueue_webhook_delivery(arq_redis, "whd_3", 1, defer_by=30)
    assert not await rung()
    score = await arq_redis.zscore(QUEUE, "deliver:psh_3:accept:0")
    assert abs(score - later.timestamp() * 1000) < 2  # runs then, not before
    # A small push due now goes into the lane, which workers wait on with a blocking read:
    # arq's workers are not woken to poll for it.
    await enqueue_deliveries(arq_redis, "psh_4", ["dlv_c"], origin="accept")
    assert not await rung()
    await enqueue_webhook_delivery(arq_redis, "whd_4", 1)
    assert await asyncio.wait_for(rung(), 2)
    await listener.aclose()
