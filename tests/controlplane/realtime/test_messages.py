"""Publishing and the history: bounded in count and in time, in publishing order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from controlplane.models import KeyMode
from controlplane.realtime.channels import Channel
from controlplane.realtime.messages import History, id_key, publish, read_since

CHANNEL = Channel("prj_a", KeyMode.TEST, "feed")


@pytest.fixture
async def redis(redis_url: str, clean_redis: None) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_the_history_keeps_the_newest_messages_after_the_last_seen_id(redis: Redis) -> None:
    history = History(messages=3, seconds=60)
    ids = [await publish(redis, CHANNEL, "", str(n), history) for n in range(6)]
    assert ids == sorted(ids, key=id_key)
    missed = await read_since(redis, CHANNEL, ids[0], history, now_ms())
    assert [(m.id, m.data) for m in missed] == [(ids[n], str(n)) for n in (3, 4, 5)]
    assert await read_since(redis, CHANNEL, ids[-1], history, now_ms()) == []
    assert await redis.xlen(CHANNEL.history_key) == 3


async def test_messages_older_than_the_history_s_seconds_are_not_resumed_and_idle_ones_expire(
    redis: Redis,
) -> None:
    history = History(messages=100, seconds=1)
    first = await publish(redis, CHANNEL, "tick", "1", history)
    await asyncio.sleep(1.1)
    second = await publish(redis, CHANNEL, "tick", "2", history)
    resumed = await read_since(redis, CHANNEL, "0-0", history, now_ms())
    assert [m.id for m in resumed] == [second]
    assert first != second
    assert 0 < await redis.pttl(CHANNEL.history_key) <= 1000


async def test_a_publish_is_announced_to_subscribers_of_the_channel_s_topic(redis: Redis) -> None:
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(CHANNEL.topic)
    sent = await publish(redis, CHANNEL, "goal", '{"home":1}', History(10, 60))
    message = None
    for _ in range(5):  # the subscription's confirmation comes first, and is skipped as None
        message = message or await pubsub.get_message(timeout=2)
    assert message is not None
    assert message["data"] == f'{sent}\ngoal\n{{"home":1}}'.encode()
    await pubsub.aclose()
