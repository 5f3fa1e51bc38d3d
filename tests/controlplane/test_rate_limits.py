"""Ingress rate limits over real HTTP: per key and per project, shared across API processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.fallback_limits import RETRY_REDIS_AFTER_SECONDS
from controlplane.models import KeyKind, KeyMode, UsageDay, UsageMetric
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.redis_server import RestartableRedis
from tests.support.servers import serving
from tests.support.tenants import make_tenant
from workers.tasks.usage_flush import flush_request_counts

pytestmark = pytest.mark.database

# A request every five seconds, bursts of three: crossed in a test without sleeping, and a
# slow machine would need seconds between requests to earn a token back.
SLOW = {"plan_free_requests_per_second": 0.2, "rate_limit_burst_seconds": 15.0}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def servers(
    make_settings: Callable[..., Settings], database: None
) -> AsyncIterator[Callable[..., Any]]:
    """Start API processes (app instances) on the same settings; yields a starter."""
    opened: list[Any] = []

    async def start(count: int = 1, **overrides: Any) -> list[httpx.AsyncClient]:
        settings = make_settings(**{**SLOW, **overrides})
        clients = []
        for _ in range(count):
            server = serving(create_app(settings))
            client = httpx.AsyncClient(base_url=await server.__aenter__())
            opened.extend([server, client])
            clients.append(client)
        return clients

    yield start
    for resource in reversed(opened):
        await resource.__aexit__(None, None, None)


async def test_a_burst_passes_with_headers_and_the_next_request_waits(
    servers: Callable[..., Any],
) -> None:
    (client,) = await servers()
    acme = await make_tenant("Acme")
    answers = [await client.get("/v1/devices", headers=bearer(acme.secret_key)) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    policy = answers[0].headers["RateLimit-Policy"]
    assert policy == '"api_key";q=3;w=15, "project";q=3;w=15'
    remaining = [a.headers["RateLimit"].split(", ")[0] for a in answers[:3]]
    assert [r.split(";")[1] for r in remaining] == ["r=2", "r=1", "r=0"]
    refused = answers[3]
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
    assert "0.2 requests per second" in error["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == policy


async def test_keys_share_their_project_bucket_and_projects_do_not_share(
    servers: Callable[..., Any],
) -> None:
    (client,) = await servers()
    acme = await make_tenant("Acme")
    beta = await make_tenant("Beta")
    _, second_key = await issue_api_key(acme.project, name="second", kind=KeyKind.SECRET,
                                        mode=KeyMode.TEST, pepper=TEST_SECRET_KEY)  # fmt: skip
    for _ in range(3):
        assert (await client.get("/v1/devices", headers=bearer(acme.secret_key))).is_success
    # The second key has tokens of its own, but the project has none left.
    other_key = await client.get("/v1/devices", headers=bearer(second_key))
    assert other_key.status_code == 429
    assert '"api_key";r=3' in other_key.headers["RateLimit"]  # refused: nothing spent
    assert '"project";r=0' in other_key.headers["RateLimit"]
    # Another tenant is untouched.
    assert (await client.get("/v1/devices", headers=bearer(beta.secret_key))).is_success


async def test_the_limit_holds_across_api_processes(servers: Callable[..., Any]) -> None:
    first, second = await servers(count=2)
    acme = await make_tenant("Acme")
    statuses = [
        (await client.get("/v1/devices", headers=bearer(acme.secret_key))).status_code
        for client in (first, second, first, second, first, second)
    ]
    assert statuses.count(200) == 3
    assert statuses.count(429) == 3


async def test_errors_carry_the_headers_and_requests_are_counted_in_usage(
    servers: Callable[..., Any], redis_url: str
) -> None:
    (client,) = await servers(plan_free_requests_per_second=100.0)
    acme = await make_tenant("Acme")
    missing = await client.get("/v1/devices/dev_" + "a" * 24, headers=bearer(acme.secret_key))
    assert missing.status_code == 404
    assert "RateLimit" in missing.headers
    for _ in range(4):
        await client.get("/v1/devices", headers=bearer(acme.secret_key))
    redis = Redis.from_url(redis_url)
    try:
        assert await flush_request_counts(redis) == 5
        assert await flush_request_counts(redis) == 0  # moved once
    finally:
        await redis.aclose()
    day = await UsageDay.get(organization_id=acme.organization.id,
                             metric=UsageMetric.API_REQUESTS)  # fmt: skip
    assert (day.mode, day.value) == (KeyMode.TEST, 5)
    usage = (await client.get("/v1/usage", headers=bearer(acme.secret_key))).json()
    assert usage["test"]["api_requests"]["used"] == 5  # the usage request itself is not flushed


async def test_limits_hold_while_redis_is_away_and_its_requests_are_counted_after(
    servers: Callable[..., Any], tmp_path: Path
) -> None:
    # Failing open would take the brake off exactly when Redis is slow or gone: the process
    # keeps the same buckets itself, and hands the requests it let through to the usage count
    # once Redis is back.
    redis_server = RestartableRedis(tmp_path / "redis")  # not started yet: unreachable
    (client,) = await servers(redis_url=redis_server.url)
    acme = await make_tenant("Acme")
    answers = [await client.get("/v1/devices", headers=bearer(acme.secret_key)) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert int(answers[3].headers["Retry-After"]) >= 1
    assert answers[3].json()["error"]["code"] == "rate_limited"
    assert '"api_key";r=0' in answers[2].headers["RateLimit"]

    with redis_server:
        await asyncio.sleep(RETRY_REDIS_AFTER_SECONDS + 0.1)
        back = await client.get("/v1/devices", headers=bearer(acme.secret_key))
        assert back.status_code == 200  # Redis's own buckets again
        redis = Redis.from_url(redis_server.url)
        try:
            assert await flush_request_counts(redis) == 4  # 3 while away, 1 after
        finally:
            await redis.aclose()
