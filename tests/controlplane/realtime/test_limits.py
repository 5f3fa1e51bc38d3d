"""Open streams per project, across processes: atomic, given back, and healed after a death."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from controlplane.realtime.limits import ConnectionLimiter


@pytest.fixture
async def redis(redis_url: str, clean_redis: None) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_racing_takes_on_many_processes_never_pass_the_limit(redis: Redis) -> None:
    processes = [ConnectionLimiter(redis) for _ in range(4)]
    taken = await asyncio.gather(*(p.take("prj_a", 5) for p in processes for _ in range(10)))
    assert sum(taken) == 5
    assert await ConnectionLimiter(redis).take("prj_b", 5)  # another project has its own
    assert sum(p.open_streams("prj_a") for p in processes) == 5


async def test_a_place_given_back_can_be_taken_again_and_none_means_no_limit(
    redis: Redis,
) -> None:
    first, second = ConnectionLimiter(redis), ConnectionLimiter(redis)
    assert await first.take("prj_a", 1)
    assert not await second.take("prj_a", 1)
    first.give_back("prj_a")
    for _ in range(50):
        if await second.take("prj_a", 1):
            break
        await asyncio.sleep(0.02)
    assert second.open_streams("prj_a") == 1
    assert all([await first.take("prj_a", None) for _ in range(100)])


async def test_the_places_of_a_process_that_died_come_back_when_its_lease_runs_out(
    redis: Redis,
) -> None:
    dead = ConnectionLimiter(redis, lease_seconds=1)
    assert await dead.take("prj_a", 2)
    assert await dead.take("prj_a", 2)
    alive = ConnectionLimiter(redis, lease_seconds=1)
    assert not await alive.take("prj_a", 2)
    await asyncio.sleep(1.2)  # `dead` renews nothing: it died
    assert await alive.take("prj_a", 2)
    assert await alive.take("prj_a", 2)
    assert not await alive.take("prj_a", 2)


async def test_renewing_writes_the_true_counts_over_what_redis_lost(redis: Redis) -> None:
    limiter = ConnectionLimiter(redis)
    assert await limiter.take("prj_a", 3)
    assert await limiter.take("prj_a", 3)
    await redis.flushdb()  # Redis came back empty: it knows of no stream
    await limiter.renew()
    other = ConnectionLimiter(redis)
    assert await other.take("prj_a", 3)
    assert not await other.take("prj_a", 3)
    await limiter.release_all()
    assert await other.take("prj_a", 3)
