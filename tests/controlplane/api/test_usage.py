"""Quotas and usage over real HTTP: exact under concurrency, all or nothing, visible."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import (
    Delivery,
    KeyKind,
    KeyMode,
    Notification,
    Push,
    UsagePeriod,
)
from tests.conftest import TEST_SECRET_KEY
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

ALERT = {"kind": "alert", "alert": {"title": "Order shipped"}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def devices(client: httpx.AsyncClient, key: str, count: int, first: int = 0) -> list[str]:
    ids = []
    for number in range(first, first + count):
        response = await client.post(
            "/v1/devices", json={"token": f"{number:064x}", "platform": "ios", "tags": ["all"]},
            headers=bearer(key),
        )  # fmt: skip
        assert response.status_code == 200, response.text
        ids.append(str(response.json()["id"]))
    return ids


async def send(client: httpx.AsyncClient, key: str, to: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/pushes", json={**ALERT, "to": to}, headers=bearer(key))


async def test_a_send_past_the_quota_is_refused_whole_with_the_limit_usage_and_reset(
    start: Callable[..., Any],
) -> None:
    client = await start(plan_free_pushes_per_month=5)
    acme = await make_tenant("Acme")
    ids = await devices(client, acme.secret_key, 3)
    assert (await send(client, acme.secret_key, {"tags": ["all"]})).status_code == 202

    refused = await send(client, acme.secret_key, {"tags": ["all"]})

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("quota_exceeded", "quota_exceeded")
    now = datetime.now(UTC)
    reset = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert "needs 3 test-mode pushes" in error["message"]
    assert "used 3 of its 5" in error["message"]
    assert reset.isoformat() in error["message"]
    assert await Push.all().count() == 1  # nothing of the refused send was queued
    assert await Delivery.all().count() == 3
    # Exactly up to the limit still goes through.
    fits = await send(client, acme.secret_key, {"device_ids": ids[:2]})
    assert fits.status_code == 202, fits.text
    usage = (await client.get("/v1/usage", headers=bearer(acme.secret_key))).json()
    assert usage["test"]["pushes"] == {"used": 5, "limit": 5, "remaining": 0}


@pytest.mark.parametrize(("quota", "recipients"), [(37, 1), (100, 3)])
async def test_fifty_concurrent_sends_never_overshoot_the_quota(
    start: Callable[..., Any], quota: int, recipients: int
) -> None:
    client = await start(plan_free_pushes_per_month=quota)
    acme = await make_tenant("Acme")
    await devices(client, acme.secret_key, recipients)

    answers = await asyncio.gather(
        *(send(client, acme.secret_key, {"tags": ["all"]}) for _ in range(50))
    )

    statuses = Counter(answer.status_code for answer in answers)
    accepted = quota // recipients
    assert statuses == {202: accepted, 429: 50 - accepted}
    assert {a.json()["error"]["type"] for a in answers if a.status_code == 429} == {
        "quota_exceeded"
    }
    assert await Push.all().count() == accepted
    assert await Delivery.all().count() == accepted * recipients
    period = await UsagePeriod.get(organization_id=acme.organization.id)
    assert period.pushes == accepted * recipients <= quota


async def test_test_mode_and_live_mode_have_separate_quotas(start: Callable[..., Any]) -> None:
    client = await start(plan_free_pushes_per_month=2)
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    await devices(client, acme.secret_key, 2)
    assert (await send(client, acme.secret_key, {"tags": ["all"]})).status_code == 202
    assert (await send(client, acme.secret_key, {"tags": ["all"]})).status_code == 429
    # The live quota is untouched by test-mode sends.
    usage = (await client.get("/v1/usage", headers=bearer(live))).json()
    assert usage["test"]["pushes"]["used"] == 2
    assert usage["live"]["pushes"] == {"used": 0, "limit": 2, "remaining": 2}


async def test_usage_shows_the_plan_limits_and_a_daily_series_to_key_and_members_alike(
    start: Callable[..., Any],
) -> None:
    client = await start(plan_free_pushes_per_month=1000, plan_free_requests_per_second=7)
    acme: Tenant = await make_tenant("Acme")
    await devices(client, acme.secret_key, 4)
    await send(client, acme.secret_key, {"tags": ["all"]})

    by_key = await client.get("/v1/usage", headers=bearer(acme.secret_key))
    by_member = await client.get(
        f"/v1/organizations/{acme.organization.id}/usage", headers=bearer(acme.owner.token)
    )

    assert by_key.status_code == by_member.status_code == 200
    usage = by_key.json()
    assert usage == by_member.json()
    assert (usage["object"], usage["plan"], usage["organization_id"]) == (
        "usage", "free", acme.organization.id
    )  # fmt: skip
    assert usage["test"]["pushes"] == {"used": 4, "limit": 1000, "remaining": 996}
    assert usage["live"]["state_bytes"]["limit"] == 1_000_000_000
    assert usage["rate_limit"] == {"requests_per_second": 7.0, "burst": 14}
    today = datetime.now(UTC).date()
    assert [day["date"] for day in usage["daily"]["test"]][-1] == today.isoformat()
    assert len(usage["daily"]["test"]) == today.day
    assert usage["daily"]["test"][-1]["pushes"] == 4
    assert sum(day["pushes"] for day in usage["daily"]["live"]) == 0
    assert usage["period_start"].startswith(today.replace(day=1).isoformat())


async def test_owners_are_warned_once_at_80_and_at_100_percent(start: Callable[..., Any]) -> None:
    client = await start(plan_free_pushes_per_month=10)
    acme = await make_tenant("Acme")
    ids = await devices(client, acme.secret_key, 4)
    for batch in (ids, ids, ids[:1], ids[:1]):  # 4, 8 (80 %), 9, 10 (100 %)
        assert (await send(client, acme.secret_key, {"device_ids": batch})).status_code == 202
    assert (await send(client, acme.secret_key, {"device_ids": ids[:1]})).status_code == 429

    sent = await Notification.filter(organization_id=acme.organization.id).order_by("created_at")
    assert [(n.kind, n.recipient) for n in sent] == [
        ("usage.test_mode_pushes.80", acme.owner.user.email),
        ("usage.test_mode_pushes.100", acme.owner.user.email),
    ]
    assert "80 %" in sent[0].subject
    assert "all" in sent[1].subject
