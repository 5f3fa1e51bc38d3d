"""The worker takes new work the moment it is queued, not at its next poll — and keeps doing
so after Redis comes back from an outage (polling stays the fallback meanwhile)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.app import create_app
from controlplane.settings import Settings
from tests.support.redis_server import RestartableRedis
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant
from workers.worker import build_worker

pytestmark = pytest.mark.database

ONCE_A_MINUTE = 60.0  # the worker's poll delay: far longer than any wait below


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    with RestartableRedis(tmp_path / "redis") as redis:
        yield redis


async def _sent_and_completed(client: httpx.AsyncClient, key: str) -> float:
    """Register a device, push to it; seconds until the push is completed."""
    auth = {"Authorization": f"Bearer {key}"}
    registered = await client.post(
        "/v1/devices", json={"token": "ab" * 32, "platform": "ios"}, headers=auth
    )
    assert registered.status_code == 200, registered.text
    started = time.monotonic()
    accepted = await client.post(
        "/v1/pushes", headers=auth,
        json={"kind": "alert", "to": {"device_ids": [registered.json()["id"]]},
              "alert": {"title": "Now"}},
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    push_id = accepted.json()["id"]
    while (await client.get(f"/v1/pushes/{push_id}", headers=auth)).json()["status"] != (
        "completed"
    ):
        assert time.monotonic() - started < ONCE_A_MINUTE / 3, "the worker waited for its poll"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.faults
async def test_a_push_is_taken_as_soon_as_it_is_queued_even_after_a_redis_restart(
    make_settings: Callable[..., Settings], own_redis: RestartableRedis, database: None
) -> None:
    settings = make_settings(redis_url=own_redis.url, worker_poll_delay=ONCE_A_MINUTE)
    tenant = await make_tenant("Prompt Co")
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
        running_worker(settings),
    ):
        await asyncio.sleep(0.5)  # past the worker's first poll: from now on it waits a minute
        await _sent_and_completed(client, tenant.secret_key)
        own_redis.restart()  # the wake-up subscription drops with the connection
        await asyncio.sleep(2)  # the worker resubscribes on its own (no poll comes before a minute)
        await _sent_and_completed(client, tenant.secret_key)


async def test_a_job_cancelled_by_the_stop_does_not_fail_the_stop(
    make_settings: Callable[..., Settings], redis_url: str, database: None
) -> None:
    # arq cancels its jobs on SIGTERM; one cancelled while it awaits the shielded recording of
    # its result ends cancelled, and arq's close() raised that CancelledError: the worker
    # exited 1 without closing its providers (seen in the image rehearsal, now and then).
    worker = build_worker(make_settings(redis_url=redis_url), handle_signals=False)
    running = asyncio.create_task(worker.async_run())
    for _ in range(1000):  # until it has its pool (a few milliseconds)
        if worker._pool is not None:
            break
        await asyncio.sleep(0.01)
    shut_down = []
    on_shutdown = worker.on_shutdown

    async def recorded(ctx: dict[str, object]) -> None:
        assert on_shutdown is not None
        await on_shutdown(ctx)
        shut_down.append(True)

    worker.on_shutdown = recorded

    async def recording_its_result() -> None:
        await asyncio.shield(asyncio.sleep(0.2))

    worker.tasks["deliver:psh_1:accept:0"] = asyncio.create_task(recording_its_result())
    await asyncio.sleep(0)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await worker.close()  # no CancelledError
    assert shut_down == [True]
    assert worker._pool is None
