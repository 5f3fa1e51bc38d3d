"""The relay hands an accepted push to the queue as soon as Redis is back, with no error."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from controlplane.core.connections import queue_client
from controlplane.enqueue_relay import EnqueueRelay, Handover
from tests.support.queue import lane_entries
from tests.support.redis_server import RestartableRedis


async def handed_over(relay: EnqueueRelay) -> None:
    """Wait until the relay holds nothing back (Redis is back and took it all)."""
    deadline = time.monotonic() + 30
    while relay.pending:
        assert time.monotonic() < deadline, "the relay never handed them over"
        await asyncio.sleep(0.05)


async def test_a_handover_while_redis_is_down_is_enqueued_once_it_is_back(
    tmp_path: Path,
) -> None:
    with RestartableRedis(tmp_path) as server:
        redis = queue_client(server.url, "relay-test")
        registry = CollectorRegistry()
        relay = EnqueueRelay(redis, registry)
        try:
            server.kill()
            await relay.hand_over(Handover("psh_1", ["dlv_1", "dlv_2"]))  # no exception
            await relay.hand_over(Handover("psh_2", ["dlv_3"]))
            assert relay.pending == 2
            assert registry.get_sample_value("brik_enqueue_pending") == 2
            server.start()
            await handed_over(relay)
            # Small pushes due now: into the lane, for the workers to take many at once.
            assert await lane_entries(redis, "relay-test") == [
                ("psh_1", ["dlv_1", "dlv_2"]), ("psh_2", ["dlv_3"]),
            ]  # fmt: skip
            # A push too large for the lane is arq's, in jobs of 500 deliveries: handing it over
            # again (a retry whose answer was lost) adds nothing.
            fan_out = [f"dlv_{n}" for n in range(600)]
            await relay.hand_over(Handover("psh_3", fan_out))
            await relay.hand_over(Handover("psh_3", fan_out))
            queued = await redis.zrange("relay-test", 0, -1)
            assert sorted(queued) == [b"deliver:psh_3:accept:0", b"deliver:psh_3:accept:1"]
        finally:
            await relay.close()
            await redis.aclose(close_connection_pool=True)


async def test_a_batch_handed_over_while_redis_is_down_is_enqueued_whole_once_it_is_back(
    tmp_path: Path,
) -> None:
    # POST /v1/pushes/batch hands all its pushes over in one call; with Redis away each is
    # kept, and each is enqueued when it is back — the scheduled one at its moment.
    with RestartableRedis(tmp_path) as server:
        redis = queue_client(server.url, "relay-batch-test")
        relay = EnqueueRelay(redis, CollectorRegistry())
        later = datetime.now(UTC) + timedelta(hours=1)
        try:
            server.kill()
            await relay.hand_over_many([
                Handover("psh_a", ["dlv_1"]), Handover("psh_b", ["dlv_2", "dlv_3"]),
                Handover("psh_c", ["dlv_4"], defer_until=later),
            ])  # fmt: skip
            assert relay.pending == 3
            server.start()
            await handed_over(relay)
            assert await lane_entries(redis, "relay-batch-test") == [
                ("psh_a", ["dlv_1"]), ("psh_b", ["dlv_2", "dlv_3"]),
            ]  # fmt: skip
            queued = dict(await redis.zrange("relay-batch-test", 0, -1, withscores=True))
            assert queued == {b"deliver:psh_c:accept:0": int(later.timestamp() * 1000)}
            # With Redis up, a batch goes in one call.
            await relay.hand_over_many([Handover("psh_d", ["dlv_5"]), Handover("psh_e", ["dlv_6"])])
            entries = await lane_entries(redis, "relay-batch-test")
            assert [push for push, _ in entries] == ["psh_a", "psh_b", "psh_d", "psh_e"]
        finally:
            await relay.close()
            await redis.aclose(close_connection_pool=True)
