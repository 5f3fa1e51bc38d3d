"""Every provider answer, end to end: API → worker → the real aioapns / pyfcm → the fakes.

Each device's token is scripted at the fake; the test reads back what a tenant sees (the push's
counts, each delivery's status, reason and attempts, the device's state) and what the provider
received (how many requests, with which apns-id, how far apart).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from controlplane.models import Delivery, Device
from tests.support.apple import SigningKey
from tests.workers.test_deliver import bearer, live_project, register, until_final
from workers.fakes import apns, fcm
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM

pytestmark = pytest.mark.database

MAX_ATTEMPTS = 3


async def _start(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM
) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await pipeline(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url,
        delivery_max_attempts=MAX_ATTEMPTS,
    )  # fmt: skip
    return client


async def _send(client: httpx.AsyncClient, key: str, tag: str) -> dict[str, Any]:
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": [tag]}},
        headers=bearer(key),
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    return await until_final(client, key, accepted.json()["id"])


async def _register_all(
    client: httpx.AsyncClient, key: str, tokens: dict[str, str], platform: str
) -> dict[str, str]:
    """Device id per case name."""
    return {case: await register(client, key, token, platform) for case, token in tokens.items()}


async def _outcomes(push_id: str) -> dict[str, tuple[str, str | None, int]]:
    """Device id → (status, reason, attempts) for the push."""
    rows = await Delivery.filter(push_id=push_id)
    return {row.device_id: (row.status.value, row.reason, row.attempts) for row in rows}  # type: ignore[attr-defined]


async def test_every_apns_answer_ends_as_the_protocol_table_says(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake)
    key = await live_project(client, signing_key, fcm_fake)
    tokens = {case: f"{number:064x}" for number, case in enumerate(
        ["ok", "unregistered", "bad_token", "throttled", "flaky", "down", "slow", "credential"],
        start=1,
    )}  # fmt: skip
    apns_fake.script(tokens["unregistered"], apns.UNREGISTERED)
    apns_fake.script(tokens["bad_token"], apns.BAD_DEVICE_TOKEN)
    apns_fake.script(tokens["throttled"], apns.TOO_MANY_REQUESTS)
    apns_fake.script(tokens["flaky"], apns.INTERNAL_SERVER_ERROR, apns.SERVICE_UNAVAILABLE)
    apns_fake.script(tokens["down"], *[apns.SERVICE_UNAVAILABLE] * MAX_ATTEMPTS)
    apns_fake.script(tokens["slow"], apns.Outcome.ok(delay=0.5))
    apns_fake.script(tokens["credential"], apns.EXPIRED_PROVIDER_TOKEN)
    devices = await _register_all(client, key, tokens, "ios")

    push = await _send(client, key, "all")

    assert push["deliveries"] == {"delivered": 4, "invalid_token": 2, "failed": 2}
    outcome = await _outcomes(push["id"])
    assert outcome[devices["ok"]] == ("delivered", None, 1)
    assert outcome[devices["slow"]] == ("delivered", None, 1)
    assert outcome[devices["throttled"]] == ("delivered", None, 2)
    assert outcome[devices["flaky"]] == ("delivered", None, 3)
    assert outcome[devices["unregistered"]] == ("invalid_token", "Unregistered", 1)
    assert outcome[devices["bad_token"]] == ("invalid_token", "BadDeviceToken", 1)
    status, reason, attempts = outcome[devices["down"]]
    assert (status, attempts) == ("failed", MAX_ATTEMPTS)
    assert reason == f"gave up after {MAX_ATTEMPTS} attempts: ServiceUnavailable"
    status, reason, attempts = outcome[devices["credential"]]
    assert (status, attempts) == ("failed", 1)  # no retry storm on a credential error
    assert "server clock" in str(reason)
    for case in ("unregistered", "bad_token"):
        device = await Device.get(id=devices[case])
        assert device.status.value == "invalid"
        assert device.invalidated_at is not None
    for case in ("ok", "down", "credential"):
        assert (await Device.get(id=devices[case])).status.value == "active"
    # Every retry went with the delivery's one apns-id, and only retries were sent twice.
    requests = {case: [r for r in apns_fake.received if r.token == token]
                for case, token in tokens.items()}  # fmt: skip
    assert {case: len(sent) for case, sent in requests.items()} == {
        "ok": 1, "unregistered": 1, "bad_token": 1, "throttled": 2, "flaky": 3,
        "down": MAX_ATTEMPTS, "slow": 1, "credential": 1,
    }  # fmt: skip
    for sent in requests.values():
        assert len({r.apns_id for r in sent}) == 1

    # A device marked invalid is never sent to again.
    again = await _send(client, key, "all")
    assert again["recipients"] == 6
    assert [r.token for r in apns_fake.received].count(tokens["unregistered"]) == 1


async def test_a_dropped_connection_is_resent_with_the_same_apns_id(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake)
    key = await live_project(client, signing_key, fcm_fake)
    token = "ab" * 32
    apns_fake.script(token, apns.Outcome.dropped())
    device = await register(client, key, token, "ios")

    push = await _send(client, key, "all")

    assert push["deliveries"] == {"delivered": 1}
    # aioapns reconnects and resends within the same attempt; either way the id is kept.
    assert (await _outcomes(push["id"]))[device][0] == "delivered"
    sent = [r for r in apns_fake.received if r.token == token]
    assert len(sent) == 2
    assert len({r.apns_id for r in sent}) == 1
    assert apns_fake.deliveries_per_device() == {(sent[0].apns_id, token): 1}


async def test_every_fcm_answer_ends_as_the_protocol_table_says(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake)
    key = await live_project(client, signing_key, fcm_fake)
    cases = ["ok", "unregistered", "bad_token", "quota", "busy", "flaky", "credential"]
    tokens = {case: f"android-{case}-" + "x" * 24 for case in cases}
    fcm_fake.script(tokens["unregistered"], fcm.UNREGISTERED)
    fcm_fake.script(tokens["bad_token"], fcm.INVALID_TOKEN)
    # Two reasons, one Retry-After: both retries fall due at the same moment.
    fcm_fake.script(tokens["quota"], dataclasses.replace(fcm.QUOTA_EXCEEDED, retry_after=1))
    fcm_fake.script(tokens["busy"], dataclasses.replace(fcm.UNAVAILABLE, retry_after=1))
    fcm_fake.script(tokens["flaky"], fcm.INTERNAL, fcm.UNAVAILABLE)
    fcm_fake.script(tokens["credential"], fcm.THIRD_PARTY_AUTH_ERROR)
    devices = await _register_all(client, key, tokens, "android")

    push = await _send(client, key, "all")

    assert push["deliveries"] == {"delivered": 4, "invalid_token": 2, "failed": 1}
    outcome = await _outcomes(push["id"])
    assert outcome[devices["ok"]] == ("delivered", None, 1)
    assert outcome[devices["quota"]] == ("delivered", None, 2)
    assert outcome[devices["busy"]] == ("delivered", None, 2)
    assert outcome[devices["flaky"]] == ("delivered", None, 3)
    assert outcome[devices["unregistered"]][:1] == ("invalid_token",)
    assert outcome[devices["bad_token"]][0] == "invalid_token"  # sygnal keeps these; we don't
    status, reason, attempts = outcome[devices["credential"]]
    assert (status, attempts) == ("failed", 1)
    assert "service-account key" in str(reason)
    for case in ("unregistered", "bad_token"):
        assert (await Device.get(id=devices[case])).status.value == "invalid"
    # FCM's Retry-After was honoured: the second request came no sooner than it asked.
    for case in ("quota", "busy"):
        sent = [m.received_at for m in fcm_fake.received if m.token == tokens[case]]
        assert len(sent) == 2
        assert sent[1] - sent[0] >= 1.0


async def test_a_dead_live_activity_token_is_dropped_alone_and_alerts_still_arrive(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake)
    key = await live_project(client, signing_key, fcm_fake)
    phones = {
        name: {"token": f"{n:064x}", "live_activity_token": f"{n + 10:064x}",
               "push_to_start_token": f"{n + 20:064x}"}
        for n, name in ((1, "ended"), (2, "stale"))
    }  # fmt: skip
    apns_fake.script(phones["ended"]["live_activity_token"], apns.UNREGISTERED)
    apns_fake.script(phones["stale"]["push_to_start_token"], apns.EXPIRED_TOKEN)
    ids = {}
    for name, tokens in phones.items():
        registered = await client.post(
            "/v1/devices", json={**tokens, "platform": "ios", "tags": ["all"]},
            headers=bearer(key),
        )  # fmt: skip
        assert registered.status_code == 200, registered.text
        ids[name] = registered.json()["id"]

    async def push(body: dict[str, Any], device: str) -> dict[str, Any]:
        accepted = await client.post(
            "/v1/pushes", json={**body, "to": {"device_ids": [ids[device]]}}, headers=bearer(key)
        )
        assert accepted.status_code == 202, accepted.text
        return await until_final(client, key, accepted.json()["id"])

    update = {
        "kind": "liveactivity",
        "live_activity": {"event": "update", "content_state": {"stage": "shipped"}},
    }
    start = {"kind": "liveactivity", "live_activity": {
        "event": "start", "content_state": {"stage": "packed"},
        "attributes_type": "OrderTracking", "attributes": {"order": "A-1"}}}  # fmt: skip
    ended = await push(update, "ended")
    stale = await push(start, "stale")

    assert ended["deliveries"] == {"invalid_token": 1}
    assert stale["deliveries"] == {"invalid_token": 1}
    (reason,) = (await _outcomes(ended["id"]))[ids["ended"]][1:2]
    assert str(reason).startswith("Unregistered")
    assert "Live Activity token" in str(reason)
    devices = {name: (await client.get(f"/v1/devices/{ids[name]}", headers=bearer(key))).json()
               for name in ids}  # fmt: skip
    # Only the token Apple refused is gone; the phones stay active with their other tokens.
    assert devices["ended"]["status"] == "active"
    assert (devices["ended"]["has_live_activity_token"],
            devices["ended"]["has_push_to_start_token"]) == (False, True)  # fmt: skip
    assert devices["stale"]["status"] == "active"
    assert (devices["stale"]["has_live_activity_token"],
            devices["stale"]["has_push_to_start_token"]) == (True, False)  # fmt: skip

    # Their ordinary alerts still go out, to the device tokens.
    alert = await _send(client, key, "all")
    assert alert["deliveries"] == {"delivered": 2}
    delivered = {r.token for r in apns_fake.accepted()}
    assert {phones["ended"]["token"], phones["stale"]["token"]} <= delivered
    # The dropped token is never sent to again: the next update reaches nobody on that phone.
    again = await client.post(
        "/v1/pushes", json={**update, "to": {"device_ids": [ids["ended"]]}}, headers=bearer(key)
    )
    assert again.json()["recipients"] == 0
    sent_to = [r.token for r in apns_fake.received]
    assert sent_to.count(phones["ended"]["live_activity_token"]) == 1


async def test_a_dead_widget_token_is_dropped_alone_and_alerts_still_arrive(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await _start(pipeline, apns_fake, fcm_fake)
    key = await live_project(client, signing_key, fcm_fake)
    phone, widget_token = f"{1:064x}", f"{2:064x}"
    apns_fake.script(widget_token, apns.UNREGISTERED)  # the widget was removed, say
    registered = await client.post(
        "/v1/devices", json={"token": phone, "platform": "ios", "tags": ["all"],
                             "widget_push_token": widget_token}, headers=bearer(key),
    )  # fmt: skip
    assert registered.status_code == 200, registered.text
    device = registered.json()["id"]

    accepted = await client.post(
        "/v1/widgets/Score/reload", json={"to": {"device_ids": [device]}}, headers=bearer(key)
    )
    reload = await until_final(client, key, accepted.json()["id"])

    assert reload["deliveries"] == {"invalid_token": 1}
    (reason,) = (await _outcomes(reload["id"]))[device][1:2]
    assert str(reason).startswith("Unregistered")
    assert "widget push token is dropped, the device stays active" in str(reason)
    after = (await client.get(f"/v1/devices/{device}", headers=bearer(key))).json()
    assert (after["status"], after["has_widget_push_token"]) == ("active", False)
    # The phone's alerts still go, to its device token.
    alert = await _send(client, key, "all")
    assert alert["deliveries"] == {"delivered": 1}
    assert phone in {r.token for r in apns_fake.accepted()}
    # The dropped token is not sent to again: the next reload skips the phone, and says so.
    again = await client.post(
        "/v1/widgets/Score/reload", json={"to": {"device_ids": [device]}}, headers=bearer(key)
    )
    assert again.json()["recipients"] == 0
    assert [w["code"] for w in again.json()["warnings"]] == [
        "no_recipients", "no_widget_push_token",
    ]  # fmt: skip
    assert [r.token for r in apns_fake.received].count(widget_token) == 1
