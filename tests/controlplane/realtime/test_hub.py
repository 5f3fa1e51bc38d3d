"""The hub: one Redis subscription per channel per process, fanned out, and honest about loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from controlplane.models import KeyMode
from controlplane.realtime.channels import Channel
from controlplane.realtime.hub import LOST_REDIS, TOO_SLOW, RealtimeHub
from controlplane.realtime.messages import History, publish
from tests.support.redis_server import RestartableRedis

NEWS = Channel("prj_a", KeyMode.TEST, "news")
HISTORY = History(10, 60)


@pytest.fixture
async def redis(redis_url: str, clean_redis: None) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def subscribers(redis: Redis, channel: Channel) -> int:
    counts = dict(await redis.pubsub_numsub(channel.topic))
    return int(counts[channel.topic.encode()])


async def test_many_local_streams_of_a_channel_share_one_redis_subscription(
    redis: Redis, redis_url: str
) -> None:
    hub = RealtimeHub(redis_url, CollectorRegistry())
    try:
        streams = await asyncio.gather(*(hub.subscribe(NEWS) for _ in range(50)))
        assert await subscribers(redis, NEWS) == 1
        sent = await publish(redis, NEWS, "", "1", HISTORY)
        received = await asyncio.gather(*(stream.get(5) for stream in streams))
        assert {message.id for message in received if message is not None} == {sent}
        assert sum(message is not None for message in received) == 50
        for stream in streams:
            stream.close()
        for _ in range(50):
            if await subscribers(redis, NEWS) == 0:
                break
            await asyncio.sleep(0.02)
        assert await subscribers(redis, NEWS) == 0
        assert hub.open_streams == 0
    finally:
        await hub.close()


async def test_a_stream_that_does_not_read_is_ended_instead_of_queueing_without_bound(
    redis: Redis, redis_url: str
) -> None:
    hub = RealtimeHub(redis_url, CollectorRegistry(), queue_size=3)
    try:
        slow, quick = await hub.subscribe(NEWS), await hub.subscribe(NEWS)
        for n in range(4):
            await publish(redis, NEWS, "", str(n), HISTORY)
            assert await quick.get(5) is not None
        for _ in range(50):
            if slow.ended is not None:
                break
            await asyncio.sleep(0.02)
        assert slow.ended == TOO_SLOW
        assert quick.ended is None
    finally:
        await hub.close()


async def test_losing_redis_ends_every_stream_refuses_new_ones_and_recovers(
    tmp_path: Path,
) -> None:
    with RestartableRedis(tmp_path / "redis") as server:
        hub = RealtimeHub(server.url, CollectorRegistry())
        try:
            stream = await hub.subscribe(NEWS)
            server.kill()
            assert await stream.get(20) is None
            assert stream.ended == LOST_REDIS
            stream.close()
            with pytest.raises(RedisError):
                await hub.subscribe(NEWS)
            server.start()
            again = await hub.subscribe(NEWS)
            client = Redis.from_url(server.url)
            sent = await publish(client, NEWS, "", "1", HISTORY)
            await client.aclose()
            message = await again.get(5)
            assert message is not None
            assert message.id == sent
            again.close()
        finally:
            await hub.close()


async def test_a_malformed_message_on_a_channel_s_topic_is_dropped_and_the_rest_go_on(
    redis: Redis, redis_url: str
) -> None:
    hub = RealtimeHub(redis_url, CollectorRegistry())
    try:
        stream = await hub.subscribe(NEWS)
        await redis.publish(NEWS.topic, b"\xff not from messages.publish")
        sent = await publish(redis, NEWS, "", "1", HISTORY)
        message = await stream.get(5)
        assert message is not None
        assert message.id == sent
        assert stream.ended is None
    finally:
        await hub.close()
