"""The worker's analytics jobs, for real: a ``brik-cloud worker`` killed with SIGKILL in the
middle of a load loses nothing and counts nothing twice once another worker takes over; a
running worker loads what the API accepted within seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.app import create_app
from controlplane.models import AnalyticsEvent, AnalyticsRollup
from controlplane.settings import Settings
from tests.support.analytics import (
    counted,
    event_buffer,
    impression,
    lock_rollups,
    wait_for_a_blocked_upsert,
)
from tests.support.processes import brik_cloud_command, settings_environment
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


@pytest.fixture
def fast_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Loads every second; a batch left by a dead worker is taken over after one."""
    return make_settings(analytics_load_every_seconds=1, analytics_claim_idle_seconds=1)


async def wait_until(check: Callable[[], object], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds  # a safety net, not a timing assertion
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_a_worker_loads_what_the_api_accepted(
    fast_settings: Settings, database: None
) -> None:
    tenant = await make_tenant("Acme", roles=())
    key = {"Authorization": f"Bearer {tenant.secret_key}"}
    app = create_app(fast_settings)
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url) as api,
        running_worker(fast_settings),
    ):
        sent = await api.post("/v1/events", json={"events": [impression() for _ in range(40)]},
                              headers=key)  # fmt: skip
        assert sent.json()["accepted"] == 40

        async def loaded() -> bool:
            summary = (await api.get("/v1/analytics/summary", headers=key)).json()
            return bool(summary["widget_impressions"] == 40)

        await wait_until(loaded, "the worker never loaded the batch")


def _worker_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = settings_environment(settings, BRIK_LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [*brik_cloud_command(), "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


@pytest.mark.postgres_only
async def test_a_worker_killed_mid_load_loses_nothing_and_counts_nothing_twice(
    fast_settings: Settings, database: None, database_url: str
) -> None:
    tenant = await make_tenant("Acme", roles=())
    key = {"Authorization": f"Bearer {tenant.secret_key}"}
    async with serving(create_app(fast_settings)) as url, httpx.AsyncClient(base_url=url) as api:
        await api.post("/v1/events", json={"events": [impression()]}, headers=key)
        async with running_worker(fast_settings):  # the rollup rows exist from here on

            async def first_loaded() -> bool:
                return await counted(tenant.project.id) == 1

            await wait_until(first_loaded, "the first event was never loaded")
        # Hold the rollups, so the victim's load stops inside its transaction — its 300
        # events inserted, not committed — and kill it there.
        locker = await lock_rollups(database_url, tenant.project.id)
        victim = _worker_process(fast_settings)
        try:
            batch = {"events": [impression(platform="ios") for _ in range(300)]}
            assert (await api.post("/v1/events", json=batch, headers=key)).status_code == 200
            await wait_for_a_blocked_upsert(database_url)
            os.killpg(victim.pid, signal.SIGKILL)  # no cleanup, no goodbye
            victim.wait(timeout=10)
        finally:
            if victim.poll() is None:
                os.killpg(victim.pid, signal.SIGKILL)
            await locker.execute("ROLLBACK")
            await locker.close()
        assert await counted(tenant.project.id) == 1  # nothing of the killed load stayed

        async with running_worker(fast_settings):  # a fresh worker takes over the batch

            async def all_loaded() -> bool:
                return await counted(tenant.project.id) == 301

            await wait_until(all_loaded, "the killed worker's batch was never taken over")
            summary = (await api.get("/v1/analytics/summary", headers=key)).json()
    assert await AnalyticsEvent.filter(project_id=tenant.project.id).count() == 301
    assert summary["widget_impressions"] == 301
    ios = await AnalyticsRollup.get(project_id=tenant.project.id, granularity="day",
                                    dimension="platform", value="ios")  # fmt: skip
    assert ios.count == 300
    redis = Redis.from_url(fast_settings.redis_url)
    assert await event_buffer(redis).backlog() == (0, 0)
    await redis.aclose()
