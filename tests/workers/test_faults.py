"""Fault tests, counted at the fake APNs: a worker killed with SIGKILL mid fan-out, and an
error storm. Every device gets the push; the only second sends are those in flight at the kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.keys import hash_key
from controlplane.crypto import KeyRing
from controlplane.models import (
    Delivery,
    DeliveryStatus,
    Device,
    KeyKind,
    KeyMode,
    Platform,
    Push,
    PushStatus,
)
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import SigningKey
from tests.support.processes import brik_cloud_command, settings_environment
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant
from workers.fakes.apns import FakeAPNs

pytestmark = pytest.mark.database

DEVICES = 1500
IN_FLIGHT = 50


async def _fan_out(settings: Settings, signing_key: SigningKey) -> str:
    """1500 live iOS devices and an accepted push to all of them; returns the push id."""
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    keyring = KeyRing([k.get_secret_value() for k in settings.encryption_keys])
    tokens = [f"{n + 1:064x}" for n in range(DEVICES)]
    await Device.bulk_create([
        Device(project=acme.project, mode=KeyMode.LIVE, platform=Platform.IOS,
               token_hash=hash_key(token, TEST_SECRET_KEY),
               token_encrypted=keyring.encrypt(token.encode()), token_last_four=token[-4:],
               user_id="everyone")
        for token in tokens
    ])  # fmt: skip
    auth = {"Authorization": f"Bearer {live}"}
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as api:
        uploaded = await api.put("/v1/credentials/apns", json={
            "key": signing_key.pem, "key_id": signing_key.key_id,
            "team_id": signing_key.team_id, "topic": "com.example.app",
            "environment": "sandbox"}, headers=auth)  # fmt: skip
        assert uploaded.status_code == 200
        body = {"kind": "alert", "alert": {"title": "Flash sale"},
                "to": {"user_ids": ["everyone"]}}  # fmt: skip
        accepted = await api.post("/v1/pushes", json=body, headers=auth)
    assert accepted.json()["recipients"] == DEVICES
    return str(accepted.json()["id"])


async def _wait_completed(push_id: str) -> None:
    deadline = time.monotonic() + 120  # a safety net, not a timing assertion
    while (await Push.get(id=push_id)).status is not PushStatus.COMPLETED:
        assert time.monotonic() < deadline, "the push never completed"
        await asyncio.sleep(0.1)


@pytest.fixture
def fault_settings(make_settings: Callable[..., Settings], apns_fake: FakeAPNs) -> Settings:
    return make_settings(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        delivery_in_flight_per_connection=IN_FLIGHT, delivery_lease_seconds=2,
        reconcile_every_seconds=1, reconcile_grace_seconds=2,
        delivery_retry_base_seconds=0.05, delivery_retry_max_seconds=0.5,
        delivery_max_attempts=20,
    )  # fmt: skip


def _worker_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = settings_environment(settings, BRIK_LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [*brik_cloud_command(), "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


async def test_a_worker_killed_mid_fan_out_loses_nothing_and_resends_only_what_was_in_flight(
    fault_settings: Settings, apns_fake: FakeAPNs, signing_key: SigningKey, database: None
) -> None:
    apns_fake.default_delay = 0.05  # slow enough to kill the worker half way
    push_id = await _fan_out(fault_settings, signing_key)
    victim = _worker_process(fault_settings)
    try:
        deadline = time.monotonic() + 60
        while len(apns_fake.received) < DEVICES // 4:
            assert victim.poll() is None, "the worker exited on its own"
            assert time.monotonic() < deadline, "the worker never got going"
            await asyncio.sleep(0.01)
        os.killpg(victim.pid, signal.SIGKILL)  # no cleanup, no goodbye
        victim.wait(timeout=10)
        received_at_kill = len(apns_fake.received)
        assert received_at_kill < DEVICES, "killed too late to prove anything"
        unfinished = await Delivery.filter(push_id=push_id).exclude(
            status=DeliveryStatus.DELIVERED).count()  # fmt: skip
        assert unfinished > 0
        async with running_worker(fault_settings):  # a fresh worker takes over
            await _wait_completed(push_id)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
    statuses = Counter(await Delivery.filter(push_id=push_id).values_list("status", flat=True))
    assert statuses == {DeliveryStatus.DELIVERED: DEVICES}
    per_device = apns_fake.deliveries_per_device()
    assert len(per_device) == DEVICES  # nobody missed
    twice = {key: count for key, count in per_device.items() if count > 1}
    assert set(twice.values()) <= {2}
    assert len(twice) <= IN_FLIGHT  # only what was in flight at the kill
    for apns_id, token in twice:
        copies = [r for r in apns_fake.accepted() if (r.apns_id, r.token) == (apns_id, token)]
        assert {r.headers["apns-collapse-id"] for r in copies} == {push_id}


async def test_an_error_storm_delivers_everything_exactly_once(
    fault_settings: Settings, apns_fake: FakeAPNs, signing_key: SigningKey, database: None
) -> None:
    apns_fake.chaos = 0.3  # 429 / 500 / 503 on 30 % of requests
    push_id = await _fan_out(fault_settings, signing_key)
    async with running_worker(fault_settings):
        await _wait_completed(push_id)
    statuses = Counter(await Delivery.filter(push_id=push_id).values_list("status", flat=True))
    assert statuses == {DeliveryStatus.DELIVERED: DEVICES}
    per_device = apns_fake.deliveries_per_device()
    assert len(per_device) == DEVICES
    assert set(per_device.values()) == {1}
    refused = [r for r in apns_fake.received if not r.accepted]
    assert len(refused) > DEVICES * 0.2  # the storm really happened
    retried = await Delivery.filter(push_id=push_id, attempts__gt=1).count()
    assert retried == len({(r.apns_id, r.token) for r in refused})
