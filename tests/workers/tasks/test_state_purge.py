"""The state purge: expired entries leave in batches and give their bytes back, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controlplane import state
from controlplane.auth.api_keys import issue_api_key
from controlplane.models import KeyKind, KeyMode, StateEntry, StateUsage, UsageDay, UsageMetric
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.tenants import Tenant, make_tenant
from workers.tasks.state_purge import scheduled_state_purge
from workers.worker import build_worker

pytestmark = pytest.mark.database


async def write(client: httpx.AsyncClient, key: str, headers: dict[str, str], **body: Any
                ) -> dict[str, Any]:  # fmt: skip
    response = await client.put(f"/v1/state/{key}", json={"value": key, **body}, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def accounted(tenant: Tenant, mode: KeyMode) -> int:
    usage = await StateUsage.get_or_none(organization_id=tenant.organization.id, mode=mode)
    return usage.bytes if usage else 0


async def let_expire(*keys: str) -> None:
    """Time passes: the entries' TTLs run out (the clock is the database's ``expires_at``)."""
    await StateEntry.filter(key__in=keys).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )


async def test_expired_entries_are_purged_and_their_bytes_given_back(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    server = {"Authorization": f"Bearer {acme.secret_key}"}
    await write(client, "session:1", server, ttl_seconds=60)
    later = await write(client, "session:2", server, ttl_seconds=3600)
    kept = await write(client, "config:theme", server)
    await let_expire("session:1")

    purged = await scheduled_state_purge({})

    assert purged == 1
    assert sorted(await StateEntry.all().values_list("key", flat=True)) == [
        "config:theme", "session:2"
    ]  # fmt: skip
    assert await accounted(acme, KeyMode.TEST) == later["size_bytes"] + kept["size_bytes"]
    usage = (await client.get("/v1/usage", headers=server)).json()
    assert usage["test"]["state_bytes"]["used"] == await accounted(acme, KeyMode.TEST)
    # The run also snapshots today's stored bytes into the daily series.
    today = usage["daily"]["test"][-1]
    assert today["state_bytes"] == await accounted(acme, KeyMode.TEST)
    assert await UsageDay.filter(metric=UsageMetric.STATE_BYTES).count() == 1
    assert await scheduled_state_purge({}) == 0


async def test_the_purge_goes_in_batches_across_organizations_and_modes(
    client: httpx.AsyncClient, database: None
) -> None:
    acme, globex = await make_tenant("Acme"), await make_tenant("Globex")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    writers = [
        (acme, KeyMode.TEST, {"Authorization": f"Bearer {acme.secret_key}"}),
        (acme, KeyMode.LIVE, {"Authorization": f"Bearer {live}"}),
        (globex, KeyMode.TEST, {"Authorization": f"Bearer {globex.secret_key}"}),
    ]
    for _, _, headers in writers:
        for n in range(4):
            await write(client, f"tmp:{n}", headers, ttl_seconds=60)
        await write(client, "keep", headers)
    await let_expire(*(f"tmp:{n}" for n in range(4)))

    assert await state.purge_expired(batch=5) == 12

    for tenant, mode, _ in writers:
        remaining = await StateEntry.filter(project_id=tenant.project.id, mode=mode)
        assert [entry.key for entry in remaining] == ["keep"]
        assert await accounted(tenant, mode) == remaining[0].size_bytes


async def test_the_worker_runs_the_purge_every_minute(settings: Settings) -> None:
    # Built inside the running loop, as build_worker asks: arq takes the current event loop.
    worker = build_worker(settings, handle_signals=False)
    [job] = [job for job in worker.cron_jobs if job.name == "cron:scheduled_state_purge"]
    assert job.second == 20
    assert job.minute is None
