"""A provider brownout is ridden out, not counted: temporary failures are retried until the push
expires or the retry budget runs out, whatever the number of attempts.

Time is compressed through the settings (a 50 ms base delay capped at 200 ms), so a 10 s
brownout here is dozens of attempts per device — far more than the six a fixed count allowed
(on a loaded machine the brownout lasts until each device has had more than ten).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from controlplane.models import Delivery
from tests.support.apple import SigningKey
from tests.workers.test_deliver import bearer, live_project, register, until_final
from workers.fakes import apns, fcm
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM

pytestmark = pytest.mark.database

BROWNOUT_SECONDS = 10.0
IOS_DEVICES = 20
ANDROID_DEVICES = 10


async def _start(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, **settings: Any
) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await pipeline(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url, **settings,
    )  # fmt: skip
    return client


def _brownout(apns_fake: FakeAPNs, fcm_fake: FakeFCM) -> None:
    """Both providers answer 503 to every request until :func:`_recover`."""
    apns_fake.chaos_outcomes = (apns.SERVICE_UNAVAILABLE,)
    apns_fake.chaos = 1.0
    fcm_fake.outage = fcm.UNAVAILABLE


def _recover(apns_fake: FakeAPNs, fcm_fake: FakeFCM) -> None:
    apns_fake.chaos = 0.0
    fcm_fake.outage = None


def _refused_per_token(apns_fake: FakeAPNs) -> Counter[str]:
    return Counter(r.token for r in apns_fake.received if not r.accepted)


async def _send(client: httpx.AsyncClient, key: str, **fields: Any) -> str:
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Flash sale"},
                            "to": {"tags": ["all"]}, **fields}, headers=bearer(key),
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["id"])


@pytest.mark.faults
async def test_a_brownout_of_many_attempts_is_ridden_out_and_each_device_gets_the_push_once(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake)
    key = await live_project(client, signing_key, fcm_fake)
    ios = [f"{n:064x}" for n in range(1, IOS_DEVICES + 1)]
    android = [f"android-{n:03d}-" + "x" * 24 for n in range(ANDROID_DEVICES)]
    for token in ios:
        await register(client, key, token, "ios")
    for token in android:
        await register(client, key, token, "android")
    _brownout(apns_fake, fcm_fake)
    push_id = await _send(client, key)

    await asyncio.sleep(BROWNOUT_SECONDS)
    # Far past the old six tries. A loaded machine (CI, parallel test workers) makes fewer
    # attempts a second: the brownout then goes on until each device has had eleven (a safety
    # deadline, not a timing check).
    deadline = time.monotonic() + 60
    while (fewest := min(_refused_per_token(apns_fake)[token] for token in ios)) <= 10:
        assert time.monotonic() < deadline, f"a device was refused only {fewest} times"
        await asyncio.sleep(0.1)
    statuses = Counter(await Delivery.filter(push_id=push_id).values_list("status", flat=True))
    assert "failed" not in statuses, statuses  # nothing given up while the provider is down
    _recover(apns_fake, fcm_fake)

    push = await until_final(client, key, push_id)
    assert push["deliveries"] == {"delivered": IOS_DEVICES + ANDROID_DEVICES}
    per_device = apns_fake.deliveries_per_device()
    assert sorted(token for _, token in per_device) == sorted(ios)
    assert set(per_device.values()) == {1}
    assert sorted(m.token for m in fcm_fake.accepted()) == sorted(android)
    # Every attempt of a delivery carried its one apns-id (the device shows it once).
    for token in ios:
        assert len({r.apns_id for r in apns_fake.received if r.token == token}) == 1


async def test_a_push_is_retried_until_its_ttl_runs_out_then_fails_saying_so(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake)
    key = await live_project(client, signing_key, fcm_fake)
    token = "ab" * 32
    await register(client, key, token, "ios")
    _brownout(apns_fake, fcm_fake)
    started = time.monotonic()
    push = await until_final(client, key, await _send(client, key, ttl=6))
    took = time.monotonic() - started
    assert push["deliveries"] == {"failed": 1}
    [delivery] = await Delivery.filter(push_id=push["id"])
    # Retried all along its six seconds, not six times (even a loaded machine makes more).
    assert delivery.attempts > 6
    assert "ttl" in str(delivery.reason)
    assert str(delivery.reason).endswith("ServiceUnavailable")
    assert 5.5 < took < 20  # given up once expired, not before and not much after
    # The provider was never asked to deliver it after it expired.
    sent_at = [r.received_at for r in apns_fake.received if r.token == token]
    expiry = int(apns_fake.received[0].headers["apns-expiration"])
    assert max(sent_at) <= expiry + 1


async def test_without_a_ttl_the_retry_budget_bounds_the_retries(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake, delivery_retry_budget_seconds=6)
    key = await live_project(client, signing_key, fcm_fake)
    await register(client, key, "cd" * 32, "ios")
    _brownout(apns_fake, fcm_fake)
    push = await until_final(client, key, await _send(client, key))
    assert push["deliveries"] == {"failed": 1}
    [delivery] = await Delivery.filter(push_id=push["id"])
    assert delivery.attempts > 6
    assert str(delivery.reason).startswith("gave up after retrying for 6 s")
