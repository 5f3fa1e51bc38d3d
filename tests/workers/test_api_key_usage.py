"""Key uses recorded in Redis reach the database through the flush job, never backwards."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.core.keyspace import LAST_USED_HASH
from controlplane.models import ApiKey
from tests.support.tenants import make_tenant
from workers.tasks.api_key_usage import flush_api_key_usage

pytestmark = pytest.mark.database


async def test_the_flush_moves_stamps_and_keeps_uses_recorded_meanwhile(
    database: None, redis_url: str, clean_redis: None
) -> None:
    acme = await make_tenant("Acme")
    key = await ApiKey.get(project=acme.project)
    redis = Redis.from_url(redis_url)
    try:
        used = time.time() - 5
        await redis.hset(LAST_USED_HASH, key.id, str(used))
        await redis.hset(LAST_USED_HASH, "key_gone", str(used))  # a deleted key: harmless
        assert await flush_api_key_usage(redis) == 2
        await key.refresh_from_db()
        assert key.last_used_at is not None
        assert abs(key.last_used_at.timestamp() - used) < 0.001
        assert await redis.hlen(LAST_USED_HASH) == 0

        # An older stamp never moves last_used_at backwards.
        await redis.hset(LAST_USED_HASH, key.id, str(used - 3600))
        await flush_api_key_usage(redis)
        await key.refresh_from_db()
        assert abs(key.last_used_at.timestamp() - used) < 0.001
    finally:
        await redis.aclose()


async def test_a_key_used_through_the_api_gets_its_stamp_in_the_database(
    client: httpx.AsyncClient, database: None, redis_url: str
) -> None:
    acme = await make_tenant("Acme")
    before = datetime.now(UTC) - timedelta(seconds=1)
    await client.get("/v1/api_key", headers={"Authorization": f"Bearer {acme.secret_key}"})
    redis = Redis.from_url(redis_url)
    try:
        await flush_api_key_usage(redis)
    finally:
        await redis.aclose()
    key = await ApiKey.get(project=acme.project)
    assert key.last_used_at is not None
    assert key.last_used_at >= before
