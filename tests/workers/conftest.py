"""The local APNs and FCM fakes, served on loopback sockets for the worker tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.settings import Settings
from tests.support.apple import SigningKey, fake_host_tls, new_signing_key
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
    """Settings pointing APNs at the fake."""
    return Settings(
        apns_host=apns_fake.host,
        apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
    )


@pytest.fixture
async def fcm_fake() -> AsyncIterator[FakeFCM]:
    async with FakeFCM() as server:
        yield server
