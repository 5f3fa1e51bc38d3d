"""Live Activities addressed by id, end to end: API → PostgreSQL → Redis → worker → the fakes.

Through the real aioapns and pyfcm over sockets: two activities on one phone reached through
their own tokens; an update overtaken by a newer one never sent, even one waiting for its retry;
a retry carrying the first attempt's timestamp (never newer than what followed it); a dead
activity token dropped alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.crypto import KeyRing
from controlplane.models import (
    Activity,
    ActivityToken,
    ActivityTokenStatus,
    Delivery,
    DeliveryStatus,
    Device,
    DeviceStatus,
    KeyKind,
    KeyMode,
    UsagePeriod,
)
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import SigningKey
from tests.support.databases import commits_failing
from tests.support.google import new_service_account
from tests.support.processes import free_port
from tests.support.servers import running_worker, serving
from tests.support.tenants import make_tenant
from tests.workers.conftest import FAST_RETRIES
from tests.workers.test_deliver import bearer, until_final
from workers.fakes.apns import UNREGISTERED, FakeAPNs, Outcome
from workers.fakes.fcm import FakeFCM
from workers.tasks.activity_lifecycle import scheduled_activity_sweep

pytestmark = pytest.mark.database

PHONE = "ab" * 32
PUSH_TO_START = "cd" * 32
TOKEN_A = "a1" * 32
TOKEN_B = "b2" * 32
PIXEL = "pixel-token-" + "p" * 30


@dataclass
class App:
    client: httpx.AsyncClient
    secret: str
    publishable: str
    organization_id: str


def fake_settings(apns_fake: FakeAPNs, fcm_fake: FakeFCM) -> dict[str, Any]:
    return {
        "apns_host": apns_fake.host, "apns_port": apns_fake.port,
        "apns_ca_file": apns_fake.ca_file,  # type: ignore[attr-defined]
        "apns_channels_host": apns_fake.host, "apns_channels_port": apns_fake.management_port,
        "fcm_base_url": fcm_fake.base_url, "fcm_token_url": fcm_fake.token_url,
    }  # fmt: skip


async def live_project(
    client: httpx.AsyncClient, signing_key: SigningKey, fcm_fake: FakeFCM
) -> App:
    """A new tenant with live keys and APNs and FCM credentials (the fakes'), no devices."""
    tenant = await make_tenant("Acme")
    _, secret = await issue_api_key(tenant.project, name="live", kind=KeyKind.SECRET,
                                    mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    _, publishable = await issue_api_key(tenant.project, name="app", kind=KeyKind.PUBLISHABLE,
                                         mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    uploaded = await client.put("/v1/credentials/apns", json={
        "key": signing_key.pem, "key_id": signing_key.key_id, "team_id": signing_key.team_id,
        "topic": "com.example.app", "environment": "sandbox"}, headers=bearer(secret))  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    info, public_key = new_service_account("https://oauth2.googleapis.com/token")
    fcm_fake.add_account(info["client_email"], info["project_id"], info["private_key_id"],
                         public_key)  # fmt: skip
    uploaded = await client.put(
        "/v1/credentials/fcm", json={"service_account": info}, headers=bearer(secret)
    )
    assert uploaded.status_code == 200, uploaded.text
    return App(client, secret, publishable, tenant.organization.id)


async def live_app(client: httpx.AsyncClient, signing_key: SigningKey, fcm_fake: FakeFCM) -> App:
    """:func:`live_project` with an iPhone (and its push-to-start token) and an Android phone."""
    app = await live_project(client, signing_key, fcm_fake)
    for device in (
        {"token": PHONE, "platform": "ios", "user_id": "ann", "push_to_start_token": PUSH_TO_START},
        {"token": PIXEL, "platform": "android", "user_id": "ann"},
    ):
        registered = await client.post("/v1/devices", json=device,
                                       headers=bearer(app.publishable))  # fmt: skip
        assert registered.status_code == 200, registered.text
    return app


async def post(app: App, path: str, body: dict[str, Any], key: str | None = None,
               **headers: str) -> dict[str, Any]:  # fmt: skip
    response = await app.client.post(
        path, json=body, headers={**bearer(key or app.secret), **headers}
    )
    assert response.status_code in (200, 201, 202), response.text
    return dict(response.json())


async def device_id(app: App, token: str) -> str:
    found = await Device.get(token_last_four=token[-4:])
    return found.id


async def start_order(app: App, order: str) -> dict[str, Any]:
    return await post(app, "/v1/activities", {
        "activity_type": "OrderTracking", "attributes": {"order": order},
        "content_state": {"status": "preparing", "eta": 30}, "to": {"user_ids": ["ann"]},
    })  # fmt: skip


def aps_of(apns_fake: FakeAPNs, token: str) -> list[dict[str, Any]]:
    return [dict(r.payload["aps"]) for r in apns_fake.accepted() if r.token == token]


async def until(condition: Callable[[], Any], what: str) -> None:
    """A safety deadline, not a timing assertion."""
    deadline = time.monotonic() + 60
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_two_activities_on_one_phone_are_started_and_updated_each_through_its_token(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    app = await live_app(await pipeline(**fake_settings(apns_fake, fcm_fake)), signing_key,
                         fcm_fake)  # fmt: skip
    first, second = await start_order(app, "A-1"), await start_order(app, "B-2")
    assert first["status"] == "starting"
    assert first["recipients"] == 2
    await until_final(app.client, app.secret, first["push_id"])
    await until_final(app.client, app.secret, second["push_id"])
    starts = aps_of(apns_fake, PUSH_TO_START)
    assert [s["event"] for s in starts] == ["start", "start"]
    assert {s["attributes"]["brik_activity_id"] for s in starts} == {first["id"], second["id"]}
    assert all(s["attributes-type"] == "OrderTracking" for s in starts)
    started = [r for r in apns_fake.accepted() if r.token == PUSH_TO_START]
    assert {r.headers["apns-topic"] for r in started} == {"com.example.app.push-type.liveactivity"}
    android = [m.message["data"] for m in fcm_fake.accepted()]
    assert {d["brik_activity_id"] for d in android} == {first["id"], second["id"]}

    # The app reports each activity's own token (a publishable key is enough).
    phone = await device_id(app, PHONE)
    for activity, token in ((first, TOKEN_A), (second, TOKEN_B)):
        reported = await post(
            app,
            f"/v1/activities/{activity['id']}/tokens",
            {"device_id": phone, "token": token},
            key=app.publishable,
        )
        assert reported["status"] == "active"
    updated = await post(
        app,
        f"/v1/activities/{first['id']}/update",
        {"content_state": {"status": "on its way", "eta": 12}},
    )
    assert updated["status"] == "active"
    assert updated["recipients"] == 2
    await until_final(app.client, app.secret, updated["push_id"])
    assert [a["content-state"] for a in aps_of(apns_fake, TOKEN_A)] == [
        {"status": "on its way", "eta": 12}
    ]
    assert aps_of(apns_fake, TOKEN_B) == []
    sent_to_a = [r for r in apns_fake.accepted() if r.token == TOKEN_A]
    assert sent_to_a[0].headers["apns-priority"] == "5"  # Apple throttles 10s
    ended = await post(
        app,
        f"/v1/activities/{second['id']}/end",
        {"content_state": {"status": "delivered", "eta": 0}},
    )
    await until_final(app.client, app.secret, ended["push_id"])
    assert [a["event"] for a in aps_of(apns_fake, TOKEN_B)] == ["end"]
    assert [a["event"] for a in aps_of(apns_fake, TOKEN_A)] == ["update"]
    detail = (await app.client.get(f"/v1/activities/{second['id']}",
                                   headers=bearer(app.secret))).json()  # fmt: skip
    assert detail["status"] == "ended"
    assert detail["content_state"] == {"status": "delivered", "eta": 0}
    assert {t["token"] for t in detail["tokens"]} == {f"…{TOKEN_B[-4:]}", None}
    assert {d["status"] for d in detail["last_deliveries"]} == {"delivered"}


async def test_an_update_overtaken_by_a_newer_one_is_never_sent_and_its_quota_returns(
    make_settings: Callable[..., Settings], database: None, apns_fake: FakeAPNs,
    fcm_fake: FakeFCM, signing_key: SigningKey,
) -> None:  # fmt: skip
    settings = make_settings(**fake_settings(apns_fake, fcm_fake), **FAST_RETRIES)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        # No worker yet: the updates wait in the queue, as they would behind a busy one.
        app = await live_app(client, signing_key, fcm_fake)
        phone = await device_id(app, PHONE)
        registered = await post(app, "/v1/activities/register", {
            "device_id": phone, "token": TOKEN_A, "activity_type": "OrderTracking",
            "attributes": {"order": "C-3"}, "content_state": {"eta": 30},
        }, key=app.publishable)  # fmt: skip
        path = f"/v1/activities/{registered['id']}/update"
        older = await post(app, path, {"content_state": {"eta": 20}})
        newer = await post(app, path, {"content_state": {"eta": 10}})
        assert newer["timestamp"] > older["timestamp"]
        superseded = await Delivery.filter(push_id=older["push_id"]).values_list(
            "status", flat=True
        )
        assert superseded == [DeliveryStatus.SUPERSEDED]
        usage = await UsagePeriod.get(organization_id=app.organization_id, mode=KeyMode.LIVE)
        assert usage.pushes == 1  # the overtaken update gave its push back
        async with running_worker(settings):
            await until_final(client, app.secret, newer["push_id"])
            older_push = await until_final(client, app.secret, older["push_id"])
    assert older_push["deliveries"] == {"superseded": 1}
    assert [a["content-state"] for a in aps_of(apns_fake, TOKEN_A)] == [{"eta": 10}]


async def test_a_retried_update_carries_its_first_timestamp_so_it_never_counts_as_newer(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    app = await live_app(await pipeline(**fake_settings(apns_fake, fcm_fake)), signing_key,
                         fcm_fake)  # fmt: skip
    phone = await device_id(app, PHONE)
    registered = await post(app, "/v1/activities/register", {
        "device_id": phone, "token": TOKEN_A, "activity_type": "Match",
        "content_state": {"score": "0-0"},
    }, key=app.publishable)  # fmt: skip
    apns_fake.script(TOKEN_A, Outcome.error(503, "ServiceUnavailable"))
    first = await post(
        app, f"/v1/activities/{registered['id']}/update", {"content_state": {"score": "1-0"}}
    )
    await until_final(app.client, app.secret, first["push_id"])
    attempts = [r for r in apns_fake.received if r.token == TOKEN_A]
    assert [r.status for r in attempts] == [503, 200]
    assert {r.payload["aps"]["timestamp"] for r in attempts} == {first["timestamp"]}
    second = await post(
        app, f"/v1/activities/{registered['id']}/update", {"content_state": {"score": "2-0"}}
    )
    await until_final(app.client, app.secret, second["push_id"])
    stamps = [a["timestamp"] for a in aps_of(apns_fake, TOKEN_A)]
    assert stamps == sorted(stamps)
    assert stamps[-1] == second["timestamp"] > first["timestamp"]


async def test_an_update_waiting_for_its_retry_is_superseded_and_never_sent_late(
    make_settings: Callable[..., Settings], database: None, apns_fake: FakeAPNs,
    fcm_fake: FakeFCM, signing_key: SigningKey,
) -> None:  # fmt: skip
    # Retries wait 15 to 30 s: long enough for the newer update to come in between.
    settings = make_settings(
        **fake_settings(apns_fake, fcm_fake),
        delivery_retry_base_seconds=30,
        delivery_retry_max_seconds=60,
    )
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
        running_worker(settings),
    ):
        app = await live_app(client, signing_key, fcm_fake)
        phone = await device_id(app, PHONE)
        registered = await post(app, "/v1/activities/register", {
            "device_id": phone, "token": TOKEN_A, "activity_type": "OrderTracking",
            "content_state": {"eta": 30},
        }, key=app.publishable)  # fmt: skip
        path = f"/v1/activities/{registered['id']}/update"
        apns_fake.script(TOKEN_A, Outcome.error(503, "ServiceUnavailable"))
        older = await post(app, path, {"content_state": {"eta": 20}})

        async def waiting_for_its_retry() -> bool:
            rows = await Delivery.filter(push_id=older["push_id"]).values_list("status", "attempts")
            return rows == [(DeliveryStatus.QUEUED, 1)]

        await until(waiting_for_its_retry, "the older update never waited for a retry")
        newer = await post(app, path, {"content_state": {"eta": 10}})
        assert (await until_final(client, app.secret, newer["push_id"]))["deliveries"] == {
            "delivered": 1
        }
        assert (await until_final(client, app.secret, older["push_id"]))["deliveries"] == {
            "superseded": 1
        }
    sent = [(r.status, r.payload["aps"]["content-state"]) for r in apns_fake.received
            if r.token == TOKEN_A]  # fmt: skip
    assert sent == [(503, {"eta": 20}), (200, {"eta": 10})]  # the older never went again


async def test_a_dead_activity_token_is_dropped_alone_and_the_phone_keeps_its_alerts(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    app = await live_app(await pipeline(**fake_settings(apns_fake, fcm_fake)), signing_key,
                         fcm_fake)  # fmt: skip
    phone = await device_id(app, PHONE)
    ids = []
    for token in (TOKEN_A, TOKEN_B):
        registered = await post(app, "/v1/activities/register", {
            "device_id": phone, "token": token, "activity_type": "Timer",
            "content_state": {"left": 60},
        }, key=app.publishable)  # fmt: skip
        ids.append(registered["id"])
    apns_fake.script(TOKEN_A, UNREGISTERED)
    dead = await post(app, f"/v1/activities/{ids[0]}/update", {"content_state": {"left": 50}})
    assert (await until_final(app.client, app.secret, dead["push_id"]))["deliveries"] == {
        "invalid_token": 1
    }
    token_a = await ActivityToken.get(activity_id=ids[0])
    assert token_a.status is ActivityTokenStatus.INVALID
    assert (await Device.get(id=phone)).status is DeviceStatus.ACTIVE
    alive = await post(app, f"/v1/activities/{ids[1]}/update", {"content_state": {"left": 40}})
    alert = await post(app, "/v1/pushes", {"kind": "alert", "alert": {"title": "Hi"},
                                           "to": {"device_ids": [phone]}})  # fmt: skip
    for push_id in (alive["push_id"], alert["id"]):
        assert (await until_final(app.client, app.secret, push_id))["deliveries"] == {
            "delivered": 1
        }
    again = await post(app, f"/v1/activities/{ids[0]}/update", {"content_state": {"left": 30}})
    assert [w["code"] for w in again["warnings"]] == ["no_recipients", "token_invalid"]
    # The app reports a fresh token: the activity is reachable again.
    await post(app, f"/v1/activities/{ids[0]}/tokens", {"device_id": phone, "token": "c3" * 32},
               key=app.publishable)  # fmt: skip
    revived = await post(app, f"/v1/activities/{ids[0]}/update", {"content_state": {"left": 20}})
    assert (await until_final(app.client, app.secret, revived["push_id"]))["deliveries"] == {
        "delivered": 1
    }


async def test_a_broadcast_activity_opens_a_channel_updates_it_once_and_closes_it_when_gone(
    make_settings: Callable[..., Settings], database: None, apns_fake: FakeAPNs,
    fcm_fake: FakeFCM, signing_key: SigningKey,
) -> None:  # fmt: skip
    settings = make_settings(**fake_settings(apns_fake, fcm_fake), **FAST_RETRIES)
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
        running_worker(settings),
    ):
        app = await live_app(client, signing_key, fcm_fake)
        await post(
            app,
            "/v1/devices",
            {
                "token": "ef" * 32,
                "platform": "ios",
                "tags": ["fans"],
                "push_to_start_token": "0f" * 32,
            },
            key=app.publishable,
        )
        match = await post(app, "/v1/activities", {
            "activity_type": "MatchAttributes", "attributes": {"home": "Lyon", "away": "Nice"},
            "content_state": {"score": "0-0"}, "to": {"user_ids": ["ann"], "tags": ["fans"]},
            "broadcast": True,
        })  # fmt: skip
        channel = match["channel_id"]
        assert apns_fake.channels_of("com.example.app") == [channel]
        assert match["status"] == "active"  # devices subscribe to the channel: no tokens wait
        await until_final(client, app.secret, match["push_id"])
        starts = [r.payload["aps"] for r in apns_fake.accepted()]
        assert [s["input-push-channel"] for s in starts] == [channel, channel]  # two iPhones
        for score in ("1-0", "1-1"):
            goal = await post(app, f"/v1/activities/{match['id']}/update",
                              {"content_state": {"score": score}})  # fmt: skip
            assert goal["recipients"] == 2  # the channel, and the Android phone
            await until_final(client, app.secret, goal["push_id"])
        assert apns_fake.broadcasts_per_channel() == {channel: 2}
        assert [b.payload["aps"]["content-state"] for b in apns_fake.broadcasts] == [
            {"score": "1-0"}, {"score": "1-1"},
        ]  # fmt: skip
        android = [m.message["data"]["brik_live_activity_state"] for m in fcm_fake.accepted()]
        assert android == ['{"score":"0-0"}', '{"score":"1-0"}', '{"score":"1-1"}']
        final = await post(
            app,
            f"/v1/activities/{match['id']}/end",
            {"content_state": {"score": "2-1"}, "dismissal_date": "2020-01-01T00:00:00Z"},
        )
        await until_final(client, app.secret, final["push_id"])
        assert apns_fake.broadcasts[-1].payload["aps"]["event"] == "end"
        ctx = {
            "settings": settings,
            "keyring": KeyRing([key.get_secret_value() for key in settings.encryption_keys]),
        }
        swept = await scheduled_activity_sweep(ctx)
    assert swept["channels_closed"] == 1
    assert apns_fake.channels_of("com.example.app") == []  # deleted at Apple
    assert (await scheduled_activity_sweep(ctx))["channels_closed"] == 0


async def test_a_broadcast_apple_will_not_open_starts_nothing(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    app = await live_app(await pipeline(**fake_settings(apns_fake, fcm_fake)), signing_key,
                         fcm_fake)  # fmt: skip
    apns_fake.broadcast_disabled.add("com.example.app")  # the App ID lacks Broadcast
    refused = await app.client.post(
        "/v1/activities",
        headers=bearer(app.secret),
        json={
            "activity_type": "MatchAttributes",
            "content_state": {"score": "0-0"},
            "broadcast": True,
        },
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "broadcast_unavailable"
    assert "Broadcast capability" in refused.json()["error"]["message"]
    assert not await Activity.filter(activity_type="MatchAttributes").exists()


async def test_a_broadcast_apple_does_not_answer_is_a_503_and_starts_nothing(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    # Nothing listens where the channel management API should be: no answer at all.
    unreachable = {**fake_settings(apns_fake, fcm_fake), "apns_channels_port": free_port()}
    app = await live_app(await pipeline(**unreachable), signing_key, fcm_fake)
    refused = await app.client.post("/v1/activities", headers=bearer(app.secret), json={
        "activity_type": "MatchAttributes", "content_state": {"score": "0-0"},
        "to": {"user_ids": ["ann"]}, "broadcast": True,
    })  # fmt: skip
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "broadcast_unavailable"
    assert "Nothing was started" in refused.json()["error"]["message"]
    assert not await Activity.filter(activity_type="MatchAttributes").exists()
    assert apns_fake.accepted() == []  # no push-to-start went either


async def test_a_broadcast_start_refused_after_its_channel_opened_leaves_no_channel_at_apple(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await pipeline(**fake_settings(apns_fake, fcm_fake), plan_free_pushes_per_month=0)
    app = await live_app(client, signing_key, fcm_fake)
    refused = await client.post("/v1/activities", headers=bearer(app.secret), json={
        "activity_type": "MatchAttributes", "content_state": {"score": "0-0"},
        "to": {"user_ids": ["ann"]}, "broadcast": True,
    })  # fmt: skip
    assert refused.status_code == 429, refused.text  # the month's pushes are used up
    assert not await Activity.filter(activity_type="MatchAttributes").exists()
    # The channel Brik opened first is deleted again: an app holds at most 10,000.
    assert apns_fake.channels_of("com.example.app") == []


@pytest.mark.postgres_only  # the commit is made to fail by a deferred trigger
async def test_a_broadcast_start_whose_commit_fails_leaves_no_channel_at_apple(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    app = await live_app(await pipeline(**fake_settings(apns_fake, fcm_fake)), signing_key,
                         fcm_fake)  # fmt: skip
    match = {
        "activity_type": "MatchAttributes", "content_state": {"score": "0-0"},
        "to": {"user_ids": ["ann"]}, "broadcast": True,
    }  # fmt: skip
    # The handler opens the channel and returns; only then does the transaction fail.
    async with commits_failing("activities", "activity_type", "MatchAttributes"):
        failed = await app.client.post("/v1/activities", headers=bearer(app.secret), json=match)
    assert failed.status_code == 500, failed.text
    assert not await Activity.filter(activity_type="MatchAttributes").exists()
    # The channel opened for it is deleted again: nothing else ever would, and an app holds
    # at most 10,000.
    assert apns_fake.channels_of("com.example.app") == []
    assert apns_fake.accepted() == []  # and no push-to-start went
    started = await post(app, "/v1/activities", match)  # one that commits keeps its channel
    assert apns_fake.channels_of("com.example.app") == [started["channel_id"]]
