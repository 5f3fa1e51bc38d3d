"""The egress limit: one project cannot send faster than its bucket, across workers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from controlplane.models import Delivery, DeliveryStatus
from tests.support.apple import SigningKey
from tests.support.tenants import make_tenant
from tests.workers.test_deliver import bearer, live_project, register, until_final
from workers.egress import EgressLimiter
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM

pytestmark = pytest.mark.database


async def test_the_bucket_grants_its_burst_then_its_rate(redis_url: str, clean_redis: None) -> None:
    redis = Redis.from_url(redis_url)
    limiter = EgressLimiter(redis, rate_per_second=10, burst=5)
    try:
        granted, wait = await limiter.take("prj_a", "apns", 8)
        assert (granted, round(wait, 1)) == (5, 0.3)  # the burst now, 3 more in 0.3 s
        other, _ = await limiter.take("prj_b", "apns", 8)
        assert other == 5  # buckets are per project
        # A bucket that refills once a minute, so a slow machine's gather cannot earn a token back.
        slow = EgressLimiter(redis, rate_per_second=1 / 60, burst=5)
        concurrent = await asyncio.gather(*(slow.take("prj_c", "fcm", 1) for _ in range(20)))
        assert sum(granted for granted, _ in concurrent) == 5  # atomic: never overspent
        await asyncio.sleep(wait + 0.05)
        again, _ = await limiter.take("prj_a", "apns", 3)
        assert again == 3
    finally:
        await redis.aclose()


async def test_a_fan_out_over_the_limit_waits_instead_of_failing(pipeline: object) -> None:
    client = await pipeline(egress_rate_per_second=40, egress_burst=5)  # type: ignore[operator]
    acme = await make_tenant("Acme")
    for n in range(20):
        await register(client, acme.secret_key, f"{n + 1:064x}", "ios")
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]}},
        headers=bearer(acme.secret_key),
    )  # fmt: skip
    push = await until_final(client, acme.secret_key, accepted.json()["id"])
    assert push["deliveries"] == {"delivered": 20}
    rows = await Delivery.all()
    assert {row.status for row in rows} == {DeliveryStatus.DELIVERED}
    assert {row.attempts for row in rows} == {1}  # waiting for the bucket is not an attempt


async def test_apns_and_fcm_each_wait_for_their_own_bucket(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await pipeline(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url,
        egress_rate_per_second=40, egress_burst=5,
    )  # fmt: skip
    key = await live_project(client, signing_key, fcm_fake)
    for n in range(10):
        await register(client, key, f"{n + 1:064x}", "ios")
        await register(client, key, f"android-{n}-" + "x" * 24, "android")
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]}},
        headers=bearer(key),
    )  # fmt: skip
    push = await until_final(client, key, accepted.json()["id"])
    assert push["deliveries"] == {"delivered": 20}
    assert len(apns_fake.accepted()) == 10
    assert len(fcm_fake.accepted()) == 10
