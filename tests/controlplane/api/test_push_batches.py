"""``POST /v1/pushes/batch``: each message checked and sent on its own, raw tokens registered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import (
    Delivery,
    Device,
    DeviceStatus,
    IdempotencyKey,
    KeyKind,
    KeyMode,
    Push,
)
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.databases import commits_failing
from tests.support.queue import lane_entries
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

ALERT = {"kind": "alert", "alert": {"title": "Order shipped"}}
IOS_TOKEN = "ab" * 32
ANDROID_TOKEN = "fcm-token:" + "x" * 30


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def register(client: httpx.AsyncClient, tenant: Tenant, token: str, **extra: Any) -> str:
    response = await client.post(
        "/v1/devices", json={"token": token, "platform": "ios", **extra},
        headers=bearer(tenant.secret_key),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def batch(client: httpx.AsyncClient, key: str, *messages: Any) -> httpx.Response:
    return await client.post(
        "/v1/pushes/batch", json={"messages": list(messages)}, headers=bearer(key)
    )


async def test_each_message_gets_its_own_result_and_a_bad_one_sinks_no_other(
    client: httpx.AsyncClient, database: None, settings: Settings, redis_url: str
) -> None:
    acme = await make_tenant("Acme")
    phone = await register(client, acme, "01" * 32, user_id="u_1")
    response = await batch(
        client, acme.secret_key,
        {**ALERT, "to": {"user_ids": ["u_1"]}},
        {**ALERT, "device_token": {"platform": "ios", "token": IOS_TOKEN.upper()}},
        {"kind": "alert", "alert": {}, "to": {"user_ids": ["u_1"]}},  # says nothing
        {"kind": "background", "data": {"b": "x" * 5000}, "to": {"user_ids": ["u_1"]}},
        {**ALERT, "device_token": {"platform": "android", "token": ANDROID_TOKEN}},
        {**ALERT, "to": {"user_ids": ["nobody"]}},
        {**ALERT, "to": {"user_ids": ["u_1"]}, "device_token": {"platform": "ios",
                                                                 "token": IOS_TOKEN}},
        {**ALERT, "to": {"user_ids": ["u_1"]}, "surprise": 1},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["object"], answer["accepted"], answer["refused"]) == ("push_batch", 4, 4)
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(8))
    assert [r["status"] for r in results] == [
        "accepted", "accepted", "refused", "refused", "accepted", "accepted", "refused",
        "refused",
    ]  # fmt: skip
    refusals = {r["index"]: r["error"] for r in results if r["status"] == "refused"}
    assert refusals[2]["param"].startswith("messages.2.alert")
    assert refusals[3]["code"] == "payload_too_large"
    assert refusals[3]["param"] == "messages.3"
    assert refusals[6]["param"] == "messages.6.to"
    assert refusals[7]["param"] == "messages.7.surprise"
    assert all(e["message"].startswith(e["param"]) for e in refusals.values())
    nobody = results[5]["push"]
    assert (nobody["status"], nobody["recipients"]) == ("completed", 0)
    assert nobody["warnings"][0]["code"] == "no_recipients"

    # The raw tokens are devices now, in the key's mode, lower-cased as registration does.
    pushes = [results[i]["push"]["id"] for i in (0, 1, 4)]
    deliveries = {d.push_id: d for d in await Delivery.filter(push_id__in=pushes)}  # type: ignore[attr-defined]
    assert deliveries[pushes[0]].device_id == phone  # type: ignore[attr-defined]
    ios = await Device.get(id=deliveries[pushes[1]].device_id)  # type: ignore[attr-defined]
    android = await Device.get(id=deliveries[pushes[2]].device_id)  # type: ignore[attr-defined]
    assert (ios.platform, ios.mode, ios.token_last_four) == ("ios", KeyMode.TEST, "abab")
    assert (android.platform, android.user_id, android.tags) == ("android", None, [])
    again = await client.post("/v1/devices", json={"token": IOS_TOKEN, "platform": "ios"},
                              headers=bearer(acme.secret_key))  # fmt: skip
    assert (again.json()["id"], again.json()["created"]) == (ios.id, False)
    # Every accepted push with devices is queued, and nothing of a refused one exists.
    redis = Redis.from_url(redis_url)
    try:
        queued = {push for push, _ in await lane_entries(redis, settings.queue_name)}
    finally:
        await redis.aclose()
    assert set(pushes) <= queued
    assert await Push.filter(project=acme.project).count() == 4
    detail = await client.get(f"/v1/pushes/{pushes[0]}", headers=bearer(acme.secret_key))
    assert detail.json()["to"] == {"device_ids": [], "user_ids": ["u_1"], "tags": []}


async def test_a_retried_message_is_answered_once_and_a_reused_key_is_refused(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, IOS_TOKEN, tags=["t"])
    first = {**ALERT, "to": {"tags": ["t"]}, "idempotency_key": "order-1"}
    second = {**ALERT, "device_token": {"platform": "ios", "token": "cd" * 32},
              "idempotency_key": "order-2"}  # fmt: skip
    too_big = {"kind": "background", "data": {"b": "x" * 5000}, "to": {"tags": ["t"]},
               "idempotency_key": "order-3"}  # fmt: skip
    sent = (await batch(client, acme.secret_key, first, second, too_big)).json()
    assert [r["status"] for r in sent["results"]] == ["accepted", "accepted", "refused"]

    again = (await batch(
        client, acme.secret_key, second, first,
        {**ALERT, "to": {"tags": ["t"]}, "idempotency_key": "order-4"},
        {**ALERT, "to": {"tags": ["t"]}, "idempotency_key": "order-4"},  # twice in one batch
        {**too_big, "data": {"b": "fixed"}},  # its key was released: sent now
    )).json()  # fmt: skip
    results = again["results"]
    assert [r["status"] for r in results] == [
        "accepted", "accepted", "accepted", "refused", "accepted",
    ]  # fmt: skip
    assert (results[0]["replayed"], results[0]["push"]) == (True, sent["results"][1]["push"])
    assert (results[1]["replayed"], results[1]["push"]) == (True, sent["results"][0]["push"])
    assert results[3]["error"]["code"] == "duplicate_idempotency_key"
    assert results[3]["error"]["param"] == "messages.3.idempotency_key"
    assert not results[2]["replayed"]
    assert not results[4]["replayed"]
    reused = await batch(client, acme.secret_key, {**first, "alert": {"title": "Other"}})
    error = reused.json()["results"][0]["error"]
    assert (error["code"], error["param"]) == ("idempotency_key_reused", "messages.0")
    # Two first sends, one replayed pair, then order-4 and the fixed order-3: four pushes.
    assert await Push.filter(project=acme.project).count() == 4
    keys = await IdempotencyKey.filter(project=acme.project).values_list("key", "status")
    assert sorted(keys) == [(f"order-{n}", "completed") for n in (1, 2, 3, 4)]


async def test_the_envelope_is_checked_whole(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    key = acme.secret_key
    refusals = [
        (await client.post("/v1/pushes/batch", json={"messages": []}, headers=bearer(key)),
         "messages"),
        (await client.post("/v1/pushes/batch", json={"messages": [ALERT] * 501},
                           headers=bearer(key)), "messages"),
        (await batch(client, key, {**ALERT, "to": {"tags": ["t"]}}, "not an object"),
         "messages.1"),
        (await client.post("/v1/pushes/batch", json={"messages": [ALERT], "more": 1},
                           headers=bearer(key)), "more"),
        (await client.post("/v1/pushes/batch", json={"messages": [ALERT]},
                           headers={**bearer(key), "Idempotency-Key": "k"}), "Idempotency-Key"),
    ]  # fmt: skip
    for response, param in refusals:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param, response.text
    assert await Push.filter(project=acme.project).count() == 0


async def test_text_no_column_can_store_refuses_its_message_only(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, IOS_TOKEN, tags=["t"])
    body = (
        '{"messages": [{"kind": "alert", "alert": {"title": "nul \\u0000"}, "to": {"tags": '
        '["t"]}}, {"kind": "alert", "alert": {"title": "fine"}, "to": {"tags": ["t"]}}]}'
    )
    response = await client.post(
        "/v1/pushes/batch", content=body,
        headers={**bearer(acme.secret_key), "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    first, second = response.json()["results"]
    assert (first["status"], first["error"]["param"]) == ("refused", "messages.0.alert.title")
    assert second["status"] == "accepted"


async def test_raw_tokens_are_the_devices_they_name(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    dead = await register(client, acme, IOS_TOKEN)
    await Device.filter(id=dead).update(status=DeviceStatus.INVALID, invalid_reason="Unregistered")
    response = await batch(
        client, acme.secret_key,
        {**ALERT, "device_token": {"platform": "ios", "token": IOS_TOKEN}},
        {**ALERT, "device_token": {"platform": "android", "token": IOS_TOKEN}},
        {**ALERT, "device_token": {"platform": "ios", "token": "not hex"}},
    )  # fmt: skip
    invalid, mismatch, malformed = response.json()["results"]
    # A push is not the app vouching for its token again: the device stays invalid.
    assert invalid["push"]["recipients"] == 0
    assert "1 invalid" in invalid["push"]["warnings"][0]["message"]
    assert (await Device.get(id=dead)).status is DeviceStatus.INVALID
    assert mismatch["error"]["code"] == "platform_mismatch"
    assert mismatch["error"]["param"] == "messages.1.device_token.platform"
    assert malformed["error"]["param"] == "messages.2.device_token.token"
    assert await Device.filter(project=acme.project).count() == 1

    # Registering a raw token needs devices:write, as POST /v1/devices does.
    _, narrow = await issue_api_key(
        acme.project, name="pushes only", kind=KeyKind.SECRET, mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY, scopes=["pushes:write"],
    )  # fmt: skip
    refused = await batch(
        client, narrow, {**ALERT, "device_token": {"platform": "ios", "token": "ef" * 32}}
    )
    error = refused.json()["results"][0]["error"]
    assert (error["code"], error["param"]) == ("missing_scope", "messages.0.device_token")
    assert await Device.filter(project=acme.project).count() == 1


async def test_past_the_quota_messages_are_taken_in_order_while_they_fit(
    start: Callable[..., Any],
) -> None:
    client = await start(plan_free_pushes_per_month=4)
    acme = await make_tenant("Acme")
    for number in range(3):
        await register(client, acme, f"{number:064x}", tags=["three"])
    one = {**ALERT, "device_token": {"platform": "ios", "token": "0" * 64}}
    response = await batch(
        client, acme.secret_key, one, {**ALERT, "to": {"tags": ["three"]}}, one,
        {**ALERT, "to": {"tags": ["three"]}}, one,
    )  # fmt: skip
    statuses = [r["status"] for r in response.json()["results"]]
    # 1 + 3 fill the month's 4; each later message needs room there is not.
    assert statuses == ["accepted", "accepted", "refused", "refused", "refused"]
    error = response.json()["results"][2]["error"]
    assert (error["code"], error["param"]) == ("quota_exceeded", "messages.2.device_token")
    assert "used 4 of its 4" in error["message"]
    usage = (await client.get("/v1/usage", headers=bearer(acme.secret_key))).json()
    assert usage["test"]["pushes"]["used"] == 4
    assert await Delivery.filter(push__project=acme.project).count() == 4


async def test_live_messages_need_their_platforms_credential(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    response = await batch(
        client, live, {**ALERT, "device_token": {"platform": "ios", "token": IOS_TOKEN}},
        {**ALERT, "to": {"user_ids": ["nobody"]}},
    )  # fmt: skip
    missing, nobody = response.json()["results"]
    assert (missing["error"]["code"], missing["error"]["param"]) == (
        "credential_missing", "messages.0.device_token",
    )  # fmt: skip
    assert nobody["status"] == "accepted"  # reaches no device: needs no credential
    assert await Push.filter(project=acme.project).count() == 1


@pytest.mark.postgres_only
async def test_a_batch_whose_commit_fails_leaves_nothing_and_its_keys_free(
    client: httpx.AsyncClient, database: None, settings: Settings, redis_url: str
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, IOS_TOKEN, tags=["t"])
    messages = [
        {**ALERT, "to": {"tags": ["t"]}, "idempotency_key": "fails-1"},
        {"kind": "background", "data": {"n": 1}, "idempotency_key": "fails-2",
         "device_token": {"platform": "android", "token": ANDROID_TOKEN}},
    ]  # fmt: skip
    async with commits_failing("pushes", "kind", "background"):
        failed = await batch(client, acme.secret_key, *messages)
    assert failed.status_code >= 500
    # Nothing of it: no push, no device for the raw token, no key held, nothing queued.
    assert await Push.filter(project=acme.project).count() == 0
    assert await Device.filter(project=acme.project).count() == 1
    assert not await IdempotencyKey.filter(project=acme.project).exists()
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.zcard(settings.queue_name) == 0
        assert await lane_entries(redis, settings.queue_name) == []
    finally:
        await redis.aclose()
    # Sent again, it is sent: the keys were given back, not kept for a batch that never was.
    again = (await batch(client, acme.secret_key, *messages)).json()
    assert [(r["status"], r["replayed"]) for r in again["results"]] == [("accepted", False)] * 2
