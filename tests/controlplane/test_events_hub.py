"""One Redis connection per API process, however many event streams it serves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.app import create_app
from controlplane.settings import Settings
from tests.controlplane.api.test_event_stream import bearer, opened, scheduled_push
from tests.support.redis_server import RestartableRedis
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

STREAMS = 120


def metric(text: str, name: str) -> float:
    [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(value)


async def test_many_streams_share_one_redis_connection(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    # A Redis of the test's own, so that every client it counts is this API process's.
    with RestartableRedis(tmp_path / "redis") as redis_server:
        settings = make_settings(redis_url=redis_server.url, event_streams_per_project=STREAMS)
        acme = await make_tenant("Acme", roles=())
        redis = Redis.from_url(redis_server.url)
        limits = httpx.Limits(max_connections=STREAMS + 10)
        async with (
            serving(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, limits=limits) as client,
            contextlib.AsyncExitStack() as streams,
        ):
            push_id = await scheduled_push(client, acme, 3600)
            before = (await redis.info("clients"))["connected_clients"]
            gate = asyncio.Semaphore(10)

            async def open_one() -> None:
                async with gate:
                    await streams.enter_async_context(opened(client, acme.secret_key, push_id))

            await asyncio.gather(*(open_one() for _ in range(STREAMS)))
            during = (await redis.info("clients"))["connected_clients"]
            # The API's pool (one per concurrent request at most) and one subscriber, not one
            # connection per stream.
            assert during - before <= 12, (before, during)
            numpat = await redis.execute_command("PUBSUB", "NUMPAT")
            assert numpat == 1
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, "brik_event_streams") == STREAMS
            assert metric(metrics, "brik_event_streams_redis_connected") == 1
            await streams.aclose()
            for _ in range(100):
                metrics = (await client.get("/metrics")).text
                if metric(metrics, "brik_event_streams") == 0:
                    break
                await asyncio.sleep(0.05)
            assert metric(metrics, "brik_event_streams") == 0
            assert (await client.get(f"/v1/pushes/{push_id}", headers=bearer(acme.secret_key))
                    ).status_code == 200  # fmt: skip
        await redis.aclose()
