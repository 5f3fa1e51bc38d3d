"""The Redis buffer: bounded by refusing, never by trimming; each entry's bytes freed once
however many workers acknowledge it; a Redis that lost the stream is taken up again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from controlplane.analytics.buffer import BufferFull
from controlplane.core.keyspace import ANALYTICS_STREAM
from tests.support.analytics import append, buffered, event_buffer, impression


@pytest.fixture
async def redis(redis_url: str, clean_redis: None) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_full_buffer_refuses_and_keeps_everything_it_holds(redis: Redis) -> None:
    events = [impression(properties={"padding": "x" * 1000}) for _ in range(100)]
    size = len(buffered(events))
    buffer = event_buffer(redis, max_bytes=size * 3)
    for _ in range(3):
        await append(buffer, "prj_a", events)
    with pytest.raises(BufferFull):
        await append(buffer, "prj_a", events)
    assert await buffer.backlog() == (3, size * 3)  # nothing trimmed, nothing half-added
    taken = await buffer.take("worker-1", count=1, claim_idle_ms=60_000)
    await buffer.acknowledge(taken)
    assert await buffer.backlog() == (2, size * 2)
    await append(buffer, "prj_a", events)  # room again


async def test_an_entry_acknowledged_by_two_workers_frees_its_bytes_once(redis: Redis) -> None:
    buffer = event_buffer(redis)
    await append(buffer, "prj_a", [impression()])
    await append(buffer, "prj_a", [impression(), impression()])
    slow = await buffer.take("slow-worker", count=1, claim_idle_ms=60_000)
    other = await buffer.take("other-worker", count=5, claim_idle_ms=0)  # takes slow's over
    assert [batch.entry_id for batch in other][:1] == [slow[0].entry_id]
    await buffer.acknowledge(other)
    await buffer.acknowledge(slow)  # the slow one finishes too: already gone
    assert await buffer.backlog() == (0, 0)
    one = [impression()]
    await append(buffer, "prj_a", one)
    assert await buffer.backlog() == (1, len(buffered(one)))  # the count was not driven below 0


async def test_a_redis_that_lost_the_stream_is_taken_up_again(redis: Redis) -> None:
    buffer = event_buffer(redis)
    await append(buffer, "prj_a", [impression()])
    assert len(await buffer.take("worker", count=5, claim_idle_ms=60_000)) == 1
    await redis.flushdb()  # a Redis restarted without its data: stream and group are gone
    assert await buffer.take("worker", count=5, claim_idle_ms=60_000) == []
    await append(buffer, "prj_a", [impression(), impression()])
    [batch] = await buffer.take("worker", count=5, claim_idle_ms=60_000)
    assert len(batch.events) == 2


async def test_an_unreadable_entry_is_dropped_not_retried_forever(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = event_buffer(redis)
    await buffer.take("worker", count=1, claim_idle_ms=60_000)  # makes the group
    await redis.xadd(ANALYTICS_STREAM, {"p": "prj_a", "m": "test", "e": "not json"})
    await append(buffer, "prj_a", [impression()])
    batches = await buffer.take("worker", count=5, claim_idle_ms=60_000)
    assert [len(batch.events) for batch in batches] == [1]
    assert "unreadable" in caplog.text
    await buffer.acknowledge(batches)
    assert (await buffer.backlog())[0] == 0
