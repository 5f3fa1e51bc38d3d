"""Fault tests, counted at the fake APNs: a worker killed with SIGKILL mid fan-out, an error
storm, and Redis going away under the API and under a running worker. Every device gets the
push; the only second sends are those in flight when a worker was killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

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
from tests.support.processes import brik_cloud_command, free_port, settings_environment
from tests.support.redis_server import RestartableRedis
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant
from workers.fakes.apns import FakeAPNs
from workers.worker import MAX_RECONNECT_SECONDS

pytestmark = [pytest.mark.database, pytest.mark.faults]

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
        await _upload_apns_key(api, auth, signing_key)
        body = {"kind": "alert", "alert": {"title": "Flash sale"},
                "to": {"user_ids": ["everyone"]}}  # fmt: skip
        accepted = await api.post("/v1/pushes", json=body, headers=auth)
    assert accepted.json()["recipients"] == DEVICES
    return str(accepted.json()["id"])


async def _upload_apns_key(
    api: httpx.AsyncClient, auth: dict[str, str], signing_key: SigningKey
) -> None:
    uploaded = await api.put("/v1/credentials/apns", json={
        "key": signing_key.pem, "key_id": signing_key.key_id, "team_id": signing_key.team_id,
        "topic": "com.example.app", "environment": "sandbox"}, headers=auth)  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text


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


@pytest.fixture
def outage_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    with RestartableRedis(tmp_path / "redis") as redis:
        yield redis


async def test_a_push_accepted_while_redis_is_down_is_answered_202_and_delivered_once(
    fault_settings: Settings, apns_fake: FakeAPNs, signing_key: SigningKey,
    outage_redis: RestartableRedis, database: None,
) -> None:  # fmt: skip
    settings = fault_settings.model_copy(
        update={"redis_url": outage_redis.url, "reconcile_every_seconds": 60}
    )
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    auth = {"Authorization": f"Bearer {live}"}
    tokens = [f"{n + 1:064x}" for n in range(20)]
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as api:
        await _upload_apns_key(api, auth, signing_key)
        for token in tokens:
            registered = await api.post("/v1/devices", headers=auth, json={
                "token": token, "platform": "ios", "user_id": "u_1"})  # fmt: skip
            assert registered.status_code in (200, 201), registered.text
        outage_redis.kill()
        # A worker started while Redis is away waits for it instead of exiting.
        async with running_worker(settings):
            body = {"kind": "alert", "alert": {"title": "Shipped"}, "to": {"user_ids": ["u_1"]}}
            accepted = await api.post("/v1/pushes", json=body, headers=auth)
            # Committed means accepted: a 500 would invite a plain client to send it again.
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["recipients"] == len(tokens)
            push_id = accepted.json()["id"]
            outage_redis.start()  # back, empty: the jobs were never written
            await _wait_completed(push_id)
    per_device = apns_fake.deliveries_per_device()
    assert sorted(token for _, token in per_device) == tokens
    assert set(per_device.values()) == {1}


async def test_one_worker_rides_out_a_redis_restart_mid_fan_out(
    fault_settings: Settings, apns_fake: FakeAPNs, signing_key: SigningKey,
    outage_redis: RestartableRedis, database: None,
) -> None:  # fmt: skip
    metrics_port = free_port()
    settings = fault_settings.model_copy(
        update={"redis_url": outage_redis.url, "worker_metrics_port": metrics_port}
    )
    apns_fake.default_delay = 0.02
    push_id = await _fan_out(settings, signing_key)
    worker = _worker_process(settings)
    ready = f"http://127.0.0.1:{metrics_port}/readyz"
    try:
        deadline = time.monotonic() + 60
        while len(apns_fake.received) < DEVICES // 4:
            assert worker.poll() is None, "the worker exited on its own"
            assert time.monotonic() < deadline, "the worker never got going"
            await asyncio.sleep(0.01)
        outage_redis.kill()  # the queue, its jobs and arq's bookkeeping are gone with it
        async with httpx.AsyncClient() as probe:
            while (waiting := await probe.get(ready)).status_code != 503:
                assert time.monotonic() < deadline, "the worker never noticed"
                await asyncio.sleep(0.05)
            assert waiting.json()["waiting_for"] == "redis"
            metrics = (await probe.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            assert "brik_worker_redis_connected 0.0" in metrics
            await asyncio.sleep(1.0)
            assert worker.poll() is None, "the worker exited while Redis was away"
            outage_redis.start()
            await _wait_completed(push_id)  # no restart by hand
            # Ready again within one reconnect back-off of its own (a poll that met a stale
            # connection waits that long before trying again; a lane read may come first).
            back = time.monotonic() + MAX_RECONNECT_SECONDS + 5
            while (await probe.get(ready)).status_code != 200:
                assert time.monotonic() < back, "the worker never said it was ready again"
                await asyncio.sleep(0.05)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    statuses = Counter(await Delivery.filter(push_id=push_id).values_list("status", flat=True))
    assert statuses == {DeliveryStatus.DELIVERED: DEVICES}
    per_device = apns_fake.deliveries_per_device()
    assert len(per_device) == DEVICES
    assert set(per_device.values()) == {1}  # the worker lived: nothing was sent twice
