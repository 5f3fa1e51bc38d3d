"""Pushes delivered end to end: API → PostgreSQL → Redis → a real arq worker → provider.

Test-mode pushes go to the sandbox (magic tokens script the outcomes); live pushes go through
the real aioapns and pyfcm to the local APNs and FCM fakes over sockets.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import Delivery, Device, KeyKind, KeyMode
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import SigningKey
from tests.support.google import new_service_account
from tests.support.processes import free_port
from tests.support.tenants import Tenant, make_tenant
from workers.fakes.apns import UNREGISTERED, FakeAPNs
from workers.fakes.fcm import FakeFCM

pytestmark = pytest.mark.database


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def until_final(client: httpx.AsyncClient, key: str, push_id: str) -> dict[str, Any]:
    """The push once completed (a safety deadline, not a timing assertion)."""
    deadline = time.monotonic() + 60
    while True:
        push = (await client.get(f"/v1/pushes/{push_id}", headers=bearer(key))).json()
        if push["status"] == "completed":
            return dict(push)
        assert time.monotonic() < deadline, f"push never completed: {push}"
        await asyncio.sleep(0.05)


async def register(client: httpx.AsyncClient, key: str, token: str, platform: str) -> str:
    response = await client.post(
        "/v1/devices", json={"token": token, "platform": platform, "tags": ["all"]},
        headers=bearer(key),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def live_project(
    client: httpx.AsyncClient, signing_key: SigningKey, fcm_fake: FakeFCM
) -> str:
    """A new tenant's live secret key, its project holding APNs and FCM credentials."""
    acme: Tenant = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    apns_upload = await client.put("/v1/credentials/apns", json={
        "key": signing_key.pem, "key_id": signing_key.key_id, "team_id": signing_key.team_id,
        "topic": "com.example.app", "environment": "sandbox"}, headers=bearer(live))  # fmt: skip
    assert apns_upload.status_code == 200, apns_upload.text
    info, public_key = new_service_account("https://oauth2.googleapis.com/token")
    fcm_fake.add_account(info["client_email"], info["project_id"], info["private_key_id"],
                         public_key)  # fmt: skip
    fcm_upload = await client.put(
        "/v1/credentials/fcm", json={"service_account": info}, headers=bearer(live)
    )
    assert fcm_upload.status_code == 200, fcm_upload.text
    return live


async def test_test_mode_pushes_end_in_the_outcomes_the_sandbox_promises(
    pipeline: Callable[..., Any],
) -> None:
    metrics_port = free_port()
    client = await pipeline(worker_metrics_port=metrics_port)
    acme = await make_tenant("Acme")
    key = acme.secret_key
    devices = {
        "plain": await register(client, key, "ab" * 32, "ios"),
        "unregistered": await register(client, key, "0" * 61 + "410", "ios"),
        "flaky": await register(client, key, "0" * 61 + "503", "ios"),
        "android": await register(client, key, "brik-sandbox:quota-once", "android"),
        "auth": await register(client, key, "brik-sandbox:auth-error", "android"),
    }
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]}},
        headers=bearer(key),
    )  # fmt: skip
    push = await until_final(client, key, accepted.json()["id"])
    assert push["deliveries"] == {"delivered": 3, "invalid_token": 1, "failed": 1}
    rows = {row.device_id: row for row in await Delivery.all()}  # type: ignore[attr-defined]
    assert rows[devices["flaky"]].attempts == 3  # 503 twice, then delivered
    assert rows[devices["android"]].attempts == 2  # 429 once, then delivered
    assert rows[devices["unregistered"]].reason == "Unregistered"
    dead = await Device.get(id=devices["unregistered"])
    assert (dead.status.value, dead.invalid_reason) == ("invalid", "Unregistered")
    # The worker counted what happened.
    async with httpx.AsyncClient() as scraper:
        scraped = (await scraper.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert 'brik_deliveries_total{outcome="delivered",provider="sandbox"} 3.0' in scraped
    assert 'brik_delivery_retries_total{provider="sandbox"} 3.0' in scraped  # 503 x2, 429 x1
    assert "brik_provider_send_seconds_count" in scraped
    # The heartbeat job ran at start-up: the worker's job loop takes work.
    beat = re.search(r"^brik_worker_heartbeat_timestamp_seconds (\S+)$", scraped, re.MULTILINE)
    assert beat is not None
    assert time.time() - 120 < float(beat[1]) <= time.time()
    api_metrics = (await client.get("/metrics")).text
    assert "brik_queue_depth" in api_metrics
    # An invalid device is kept, and never sent to again.
    again = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]}},
        headers=bearer(key),
    )  # fmt: skip
    assert again.json()["recipients"] == 4


async def test_live_pushes_reach_apns_and_fcm_once_each(
    pipeline: Callable[..., Any],
    apns_fake: FakeAPNs,
    fcm_fake: FakeFCM,
    signing_key: SigningKey,
) -> None:
    client = await pipeline(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url,
    )  # fmt: skip
    live = await live_project(client, signing_key, fcm_fake)
    ios_tokens = [f"{n:064x}" for n in range(1, 21)]
    apns_fake.script(ios_tokens[0], UNREGISTERED)
    for token in ios_tokens:
        await register(client, live, token, "ios")
    android_tokens = [f"android-token-{n:03d}-" + "z" * 20 for n in range(10)]
    for token in android_tokens:
        await register(client, live, token, "android")
    accepted = await client.post(
        "/v1/pushes",
        json={"kind": "alert", "alert": {"title": "Order shipped"}, "to": {"tags": ["all"]},
              "collapse_id": "order-42"},
        headers=bearer(live),
    )  # fmt: skip
    assert accepted.json()["recipients"] == 30
    push = await until_final(client, live, accepted.json()["id"])
    assert push["deliveries"] == {"delivered": 29, "invalid_token": 1}
    assert set(apns_fake.deliveries_per_device().values()) == {1}
    assert len(apns_fake.deliveries_per_device()) == 19
    assert {r.headers["apns-collapse-id"] for r in apns_fake.accepted()} == {"order-42"}
    apns_ids = {d.apns_id for d in await Delivery.filter(platform="ios")}
    assert {r.apns_id for r in apns_fake.received} <= apns_ids
    assert sorted(m.token for m in fcm_fake.accepted()) == sorted(android_tokens)


async def test_a_push_streams_its_progress_until_it_is_final(
    pipeline: Callable[..., Any],
) -> None:
    client = await pipeline()
    acme = await make_tenant("Acme")
    key = acme.secret_key
    await register(client, key, "ab" * 32, "ios")
    await register(client, key, "0" * 61 + "503", "ios")  # takes three attempts
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]}},
        headers=bearer(key),
    )  # fmt: skip
    events: list[tuple[str, str]] = []
    async with client.stream(
        "GET", f"/v1/pushes/{accepted.json()['id']}/events", headers=bearer(key), timeout=60
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, line[6:]))
    assert events[-1] == ("end", "{}")
    final = json.loads(events[-2][1])
    assert (final["status"], final["deliveries"]) == ("completed", {"delivered": 2})
    assert all(name == "push" for name, _ in events[:-1])


async def test_a_device_deleted_or_invalidated_before_its_send_is_not_sent_to(
    pipeline: Callable[..., Any],
) -> None:
    client = await pipeline()
    acme = await make_tenant("Acme")
    key = acme.secret_key
    kept = await register(client, key, "ab" * 32, "ios")
    deleted = await register(client, key, "cd" * 32, "ios")
    invalidated = await register(client, key, "ef" * 32, "ios")
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]},
                            "send_at": soon}, headers=bearer(key),
    )  # fmt: skip
    assert accepted.json()["status"] == "scheduled"
    gone = await client.delete(f"/v1/devices/{deleted}", headers=bearer(key))
    assert gone.status_code == 200, gone.text
    await Device.filter(id=invalidated).update(status="invalid", invalid_reason="Unregistered")
    push = await until_final(client, key, accepted.json()["id"])
    assert push["deliveries"] == {"delivered": 1, "failed": 2}
    rows = await Delivery.filter(push_id=push["id"]).order_by("id")
    assert {row.device_id for row in rows if row.status == "delivered"} == {kept}  # type: ignore[attr-defined]
    assert {row.reason for row in rows if row.status == "failed"} == {
        "the device was deleted or is invalid"
    }


async def test_pushes_over_the_per_device_cap_end_rate_limited_and_retries_are_not_capped(
    pipeline: Callable[..., Any],
) -> None:
    client = await pipeline(device_pushes_per_minute=2)
    acme = await make_tenant("Acme")
    key = acme.secret_key
    await register(client, key, "ab" * 32, "ios")
    flaky = await register(client, key, "0" * 61 + "503", "ios")  # fails twice, then delivered

    finals = []
    for _ in range(3):
        accepted = await client.post(
            "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"},
                                "to": {"tags": ["all"]}}, headers=bearer(key),
        )  # fmt: skip
        finals.append(await until_final(client, key, accepted.json()["id"]))

    assert [push["deliveries"] for push in finals] == [
        {"delivered": 2},
        {"delivered": 2},
        {"rate_limited": 2},
    ]
    capped = await Delivery.filter(push_id=finals[2]["id"])
    assert {(row.status.value, row.attempts) for row in capped} == {("rate_limited", 1)}
    assert {row.reason for row in capped} == {"over the cap of 2 pushes per device per minute"}
    # The flaky device took three attempts for each of its first two pushes: not capped.
    first = await Delivery.get(push_id=finals[0]["id"], device_id=flaky)
    assert first.attempts == 3


async def test_a_scheduled_push_goes_out_at_send_at_not_before_and_lives_its_ttl_from_then(
    pipeline: Callable[..., Any],
    apns_fake: FakeAPNs,
    fcm_fake: FakeFCM,
    signing_key: SigningKey,
) -> None:
    client = await pipeline(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url,
    )  # fmt: skip
    live = await live_project(client, signing_key, fcm_fake)
    await register(client, live, "ab" * 32, "ios")
    await register(client, live, "android-scheduled-" + "q" * 20, "android")
    send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    ttl = 600
    accepted = await client.post(
        "/v1/pushes",
        json={"kind": "alert", "alert": {"title": "Doors open"}, "to": {"tags": ["all"]},
              "send_at": send_at.isoformat(), "ttl": ttl},
        headers=bearer(live),
    )  # fmt: skip
    assert accepted.json()["status"] == "scheduled"
    await asyncio.sleep(2)  # the worker is running: nothing may go before send_at
    assert (apns_fake.received, fcm_fake.received) == ([], [])

    push = await until_final(client, live, accepted.json()["id"])

    assert push["deliveries"] == {"delivered": 2}
    [apple] = apns_fake.received
    [google] = fcm_fake.received
    assert min(apple.received_at, google.received_at) >= send_at.timestamp()
    # The ttl counts from send_at: Apple may store it until send_at + ttl, not creation + ttl.
    assert int(apple.headers["apns-expiration"]) >= int(send_at.timestamp()) + ttl - 1
    assert int(google.message["android"]["ttl"].removesuffix("s")) >= ttl - 2


async def test_notification_options_reach_apple_and_google_as_each_documents_them(
    pipeline: Callable[..., Any],
    apns_fake: FakeAPNs,
    fcm_fake: FakeFCM,
    signing_key: SigningKey,
) -> None:
    client = await pipeline(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url,
    )  # fmt: skip
    live = await live_project(client, signing_key, fcm_fake)
    await register(client, live, "cd" * 32, "ios")
    await register(client, live, "android-options-" + "q" * 20, "android")
    alert = {
        "title_loc_key": "SHIPPED", "body_loc_key": "ETA", "body_loc_args": ["5"],
        "thread_id": "order-42", "interruption_level": "time-sensitive",
        "relevance_score": 0.5, "image_url": "https://cdn.example.com/box.png",
        "channel_id": "orders", "color": "#FF8800", "click_action": "OPEN_ORDER",
    }  # fmt: skip
    refused = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {**alert, "color": "orange"},
                            "to": {"tags": ["all"]}}, headers=bearer(live),
    )  # fmt: skip
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "alert.color")
    overrides = {
        "apns": {"headers": {"apns-priority": 5}, "payload": {"aps": {"category": "ORDER"}}},
        "android": {"notification": {"sticky": True}},
    }
    owned = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": alert, "to": {"tags": ["all"]},
                            "apns": {"headers": {"apns-id": "mine"}}}, headers=bearer(live),
    )  # fmt: skip
    assert (owned.status_code, owned.json()["error"]["param"]) == (400, "apns.headers.apns-id")
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": alert, "to": {"tags": ["all"]},
                            **overrides}, headers=bearer(live),
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    push = await until_final(client, live, accepted.json()["id"])
    assert push["deliveries"] == {"delivered": 2}
    [apple] = apns_fake.accepted()
    assert apple.payload["brik_image_url"] == "https://cdn.example.com/box.png"
    assert apple.payload["aps"] == {
        "alert": {"title-loc-key": "SHIPPED", "loc-key": "ETA", "loc-args": ["5"]},
        "thread-id": "order-42", "interruption-level": "time-sensitive",
        "relevance-score": 0.5, "mutable-content": 1, "category": "ORDER",
    }  # fmt: skip
    assert apple.headers["apns-priority"] == "5"
    [google] = fcm_fake.accepted()
    shown = google.message["android"]["notification"]
    assert shown.pop("tag").startswith("psh_")  # no tag asked for: the push's collapse id
    assert shown == {
        "title_loc_key": "SHIPPED", "body_loc_key": "ETA", "body_loc_args": ["5"],
        "image": "https://cdn.example.com/box.png", "channel_id": "orders", "color": "#FF8800",
        "click_action": "OPEN_ORDER", "sticky": True,
    }  # fmt: skip


async def test_a_widget_reload_reaches_widgetkit_and_the_android_appwidget(
    pipeline: Callable[..., Any],
    apns_fake: FakeAPNs,
    fcm_fake: FakeFCM,
    signing_key: SigningKey,
) -> None:
    client = await pipeline(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        fcm_base_url=fcm_fake.base_url, fcm_token_url=fcm_fake.token_url,
    )  # fmt: skip
    live = await live_project(client, signing_key, fcm_fake)
    phone, widget_token = "a1" * 32, "b2" * 32
    registered = await client.post(
        "/v1/devices", json={"token": phone, "platform": "ios", "user_id": "u_1",
                             "widget_push_token": widget_token}, headers=bearer(live),
    )  # fmt: skip
    assert registered.status_code == 200, registered.text
    android = "android-widget-" + "r" * 20
    await client.post("/v1/devices", json={"token": android, "platform": "android",
                                           "user_id": "u_1"}, headers=bearer(live))  # fmt: skip

    accepted = await client.post(
        "/v1/widgets/OrderWidget/reload",
        json={"to": {"user_ids": ["u_1"]}, "data": {"eta_minutes": 7}}, headers=bearer(live),
    )  # fmt: skip

    assert accepted.status_code == 202, accepted.text
    push = await until_final(client, live, accepted.json()["id"])
    assert push["deliveries"] == {"delivered": 2}
    # iOS 26: a WidgetKit push, to the widget push token — never the device token.
    [apple] = apns_fake.accepted()
    assert apple.token == widget_token
    assert apple.headers["apns-push-type"] == "widgets"
    assert apple.headers["apns-topic"] == "com.example.app.push-type.widgets"
    assert apple.payload == {"aps": {"content-changed": True}}
    # Android: a data message naming the kind, for the app's AppWidget to refresh.
    [google] = fcm_fake.accepted()
    assert google.token == android
    assert google.message["data"] == {"brik_widget_reload": "OrderWidget"}
    assert "notification" not in google.message
    # What the widget then fetches.
    entry = await client.get("/v1/state/widget:OrderWidget", headers=bearer(live))
    assert entry.json()["value"] == {"eta_minutes": 7}


async def test_a_sandbox_magic_token_as_the_widget_token_drops_only_it(
    pipeline: Callable[..., Any],
) -> None:
    client = await pipeline()
    acme = await make_tenant("Acme")
    key = acme.secret_key
    registered = await client.post(
        "/v1/devices", json={"token": "ab" * 32, "platform": "ios",
                             "widget_push_token": "0" * 61 + "410"}, headers=bearer(key),
    )  # fmt: skip
    device = registered.json()["id"]
    accepted = await client.post(
        "/v1/widgets/OrderWidget/reload", json={"to": {"device_ids": [device]}, "data": {}},
        headers=bearer(key),
    )  # fmt: skip
    push = await until_final(client, key, accepted.json()["id"])
    assert push["deliveries"] == {"invalid_token": 1}
    after = (await client.get(f"/v1/devices/{device}", headers=bearer(key))).json()
    assert (after["status"], after["has_widget_push_token"]) == ("active", False)
