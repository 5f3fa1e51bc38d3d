"""The per-device cap in Redis: N pushes at once, then one every 60/N seconds, per device."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from workers.delivery_rows import Claimed
from workers.device_cap import DeviceCap


def claimed(delivery: str, device: str, attempts: int = 1) -> Claimed:
    return Claimed(
        id=delivery, push_id="psh_1", provider="sandbox", platform="ios", apns_id="",
        attempts=attempts,
        device_id=device, device_status="active", token_encrypted=None,
        live_activity_token_encrypted=None, push_to_start_token_encrypted=None,
        widget_push_token_encrypted=None,
    )  # fmt: skip


@pytest.fixture
async def redis(redis_url: str, clean_redis: None) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def over(cap: DeviceCap, *rows: Claimed) -> list[str]:
    capped, _ = await cap.split(list(rows))
    return [row.id for row in capped]


async def test_n_at_once_then_one_per_interval_each_device_on_its_own(redis: Redis) -> None:
    cap = DeviceCap(redis, per_minute=60)  # after the first 60, one a second
    for n in range(60):
        assert await over(cap, claimed(f"d{n}", "phone")) == []
    assert await over(cap, claimed("d60", "phone"), claimed("t0", "tablet")) == ["d60"]
    await asyncio.sleep(2.2)  # two intervals: room for two more, not three
    assert await over(cap, claimed("d61", "phone")) == []
    assert await over(cap, claimed("d62", "phone")) == []
    assert await over(cap, claimed("d63", "phone")) == ["d63"]


async def test_retries_are_never_capped_nor_counted(redis: Redis) -> None:
    cap = DeviceCap(redis, per_minute=1)
    assert await over(cap, claimed("a", "phone")) == []
    assert await over(cap, claimed("a", "phone", attempts=2)) == []  # its own retry
    assert await over(cap, claimed("b", "phone")) == ["b"]
