"""Deliveries reach the provider their row names, through the registry — and a name or platform no
provider declares fails the delivery with a reason, instead of being sent as an FCM message."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import Delivery, KeyKind, KeyMode
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import SigningKey
from tests.support.servers import worker_context
from tests.support.tenants import make_tenant
from workers.provider_cache import IDLE_AFTER_SECONDS, ProviderCache
from workers.providers.apns import ApnsProvider, ApnsPush
from workers.providers.sandbox import SandboxProvider
from workers.tasks.deliver import deliver_batch

pytestmark = pytest.mark.database


@pytest.fixture
async def worker_ctx(settings: Settings, database: None) -> AsyncIterator[dict[str, Any]]:
    async with worker_context(settings) as ctx:
        yield ctx


async def test_test_mode_pushes_go_through_the_sandbox_and_strangers_fail_with_a_reason(
    client: httpx.AsyncClient, worker_ctx: dict[str, Any]
) -> None:
    acme = await make_tenant("Acme")
    _, key = await issue_api_key(acme.project, name="test", kind=KeyKind.SECRET,
                                 mode=KeyMode.TEST, pepper=TEST_SECRET_KEY)  # fmt: skip
    auth = {"Authorization": f"Bearer {key}"}
    devices = {}
    for name, token, platform in [("ios", "ab" * 32, "ios"), ("hms", "cd" * 32, "ios"),
                                  ("web", "brik-web-token-" + "x" * 20, "android")]:  # fmt: skip
        registered = await client.post("/v1/devices", headers=auth, json={
            "token": token, "platform": platform, "tags": ["all"]})  # fmt: skip
        assert registered.status_code == 200, registered.text
        devices[registered.json()["id"]] = name
    accepted = await client.post("/v1/pushes", headers=auth, json={
        "kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]}})  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    push_id = accepted.json()["id"]
    rows = {devices[row.device_id]: row for row in await Delivery.filter(push_id=push_id)}  # type: ignore[attr-defined]
    # Rows a future (or a rolled-back) version could have written: a provider nobody
    # registered, a platform no provider sends to.
    await Delivery.filter(id=rows["hms"].id).update(provider="hms")
    await Delivery.filter(id=rows["web"].id).update(platform="web")

    counts = await deliver_batch(worker_ctx, push_id, [row.id for row in rows.values()])

    assert counts == {"delivered": 1, "failed": 2}
    after = {devices[row.device_id]: row for row in await Delivery.filter(push_id=push_id)}  # type: ignore[attr-defined]
    assert (after["ios"].status.value, after["ios"].reason) == ("delivered", None)
    assert (after["hms"].status.value, after["hms"].reason) == (
        "failed", "no push provider is named 'hms'")  # fmt: skip
    assert (after["web"].status.value, after["web"].reason) == (
        "failed", "the sandbox does not send to web devices")  # fmt: skip
    # The sandbox kept what APNs would have been sent, and nothing for the two strangers.
    sandbox = await worker_ctx["providers"].get(acme.project.id, "sandbox")
    assert isinstance(sandbox, SandboxProvider)
    assert list(sandbox.sent) == [ApnsPush(
        token="ab" * 32, apns_id=rows["ios"].apns_id, payload={"aps": {"alert": {"title": "Hi"}}},
        push_type="alert", topic="sandbox", priority=10, collapse_id=push_id, attempt=1,
    )]  # fmt: skip


async def test_a_provider_no_job_has_used_for_a_while_is_closed_and_built_again_when_needed(
    client: httpx.AsyncClient, worker_ctx: dict[str, Any], signing_key: SigningKey
) -> None:
    """A worker serving thousands of tenants keeps open connections only for those sending."""
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    uploaded = await client.put("/v1/credentials/apns", headers={"Authorization": f"Bearer {live}"},
                                json={"key": signing_key.pem, "key_id": signing_key.key_id,
                                      "team_id": signing_key.team_id, "topic": "com.example.app",
                                      "environment": "sandbox"})  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    cache: ProviderCache = worker_ctx["providers"]
    first = await cache.get(acme.project.id, "apns")
    assert await cache.get(acme.project.id, "apns") is first
    assert await cache.sweep() == 0  # in use: kept
    assert await cache.sweep(now=time.monotonic() + IDLE_AFTER_SECONDS + 1) == 1
    again = await cache.get(acme.project.id, "apns")
    assert isinstance(again, ApnsProvider)
    assert again is not first  # built anew for the next push
    assert await cache.sweep(now=time.monotonic() + IDLE_AFTER_SECONDS / 2) == 0
