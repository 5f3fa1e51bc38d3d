"""The local APNs and FCM fakes, served on loopback sockets for the worker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.app import create_app
from controlplane.settings import Settings
from tests.support.apple import SigningKey, fake_host_tls, new_signing_key
from tests.support.servers import running_worker, serving
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM


@pytest.fixture
def signing_key() -> SigningKey:
    return new_signing_key()


@pytest.fixture
async def apns_fake(tmp_path: Path, signing_key: SigningKey) -> AsyncIterator[FakeAPNs]:
    tls = fake_host_tls(tmp_path)
    server = FakeAPNs(tls=tls.server)
    server.add_key(signing_key.key_id, signing_key.team_id, signing_key.public_key)
    async with server:
        server.ca_file = tls.ca_file  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def apns_settings(apns_fake: FakeAPNs) -> Settings:
    """Settings pointing APNs (pushes, broadcasts and channel management) at the fake."""
    return Settings(
        apns_host=apns_fake.host,
        apns_port=apns_fake.port,
        apns_channels_host=apns_fake.host,
        apns_channels_port=apns_fake.management_port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
    )


@pytest.fixture
async def fcm_fake() -> AsyncIterator[FakeFCM]:
    async with FakeFCM() as server:
        yield server


FAST_RETRIES = {"delivery_retry_base_seconds": 0.05, "delivery_retry_max_seconds": 0.2}


@pytest.fixture
async def pipeline(
    make_settings: Callable[..., Settings], database: None
) -> AsyncIterator[Callable[..., Any]]:
    """Start an API and a worker on the same settings; yields a starter taking overrides."""
    stack: list[Any] = []

    async def start(**overrides: Any) -> httpx.AsyncClient:
        settings = make_settings(**FAST_RETRIES, **overrides)
        server = serving(create_app(settings))
        url = await server.__aenter__()
        worker = running_worker(settings)
        await worker.__aenter__()
        client = httpx.AsyncClient(base_url=url)
        stack.extend([server, worker, client])
        return client

    yield start
    for resource in reversed(stack):
        await resource.__aexit__(None, None, None)
