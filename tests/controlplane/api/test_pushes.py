"""Accepting pushes: recipients, limits, scheduling and idempotent retries — all or nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from controlplane.api.pushes import PushRequest
from controlplane.auth.api_keys import issue_api_key
from controlplane.idempotency import request_fingerprint
from controlplane.models import Delivery, Device, IdempotencyKey, KeyKind, KeyMode, Push
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import apns_credential, new_signing_key
from tests.support.queue import lane_entries
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

ALERT = {"kind": "alert", "alert": {"title": "Order shipped"}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def register(
    client: httpx.AsyncClient, tenant: Tenant, n: int, first: int = 0, **extra: Any
) -> list[str]:
    ids = []
    for number in range(first, first + n):
        response = await client.post(
            "/v1/devices",
            json={"token": f"{number:064x}", "platform": "ios", **extra},
            headers=bearer(tenant.secret_key),
        )
        ids.append(response.json()["id"])
    return ids


async def test_a_push_is_committed_with_a_delivery_per_device_and_queued(
    client: httpx.AsyncClient, database: None, settings: Any, redis_url: str
) -> None:
    acme = await make_tenant("Acme")
    beta = await register(client, acme, 3, tags=["beta"])
    user = await register(client, acme, 1, 100, user_id="u_1", tags=["beta"])  # both: once
    await client.post("/v1/devices", json={"token": "brik-sandbox:" + "x" * 20,
                                           "platform": "android", "user_id": "u_1"},
                      headers=bearer(acme.secret_key))  # fmt: skip
    response = await client.post(
        "/v1/pushes",
        json={**ALERT, "to": {"tags": ["beta"], "user_ids": ["u_1"]}},
        headers=bearer(acme.secret_key),
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["status"], accepted["recipients"]) == ("queued", 5)
    deliveries = await Delivery.filter(push_id=accepted["id"])
    assert len(deliveries) == 5
    assert {d.provider for d in deliveries} == {"sandbox"}  # test keys never reach a provider
    assert len({d.apns_id for d in deliveries}) == 5
    assert set(beta + user) <= {d.device_id for d in deliveries}  # type: ignore[attr-defined]
    redis = Redis.from_url(redis_url)
    try:
        queued = await lane_entries(redis, settings.queue_name)
    finally:
        await redis.aclose()
    # A small push due now goes into the workers' lane, its five deliveries in one entry.
    assert [(push, sorted(ids)) for push, ids in queued] == [
        (accepted["id"], sorted(d.id for d in deliveries))
    ]
    detail = (await client.get(f"/v1/pushes/{accepted['id']}",
                               headers=bearer(acme.secret_key))).json()  # fmt: skip
    assert detail["deliveries"] == {"queued": 5}
    listed = await client.get(f"/v1/pushes/{accepted['id']}/deliveries",
                              params={"limit": 2}, headers=bearer(acme.secret_key))  # fmt: skip
    assert len(listed.json()["data"]) == 2
    assert listed.json()["has_more"] is True


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "background", "data": {"blob": "x" * 5000}, "to": {"tags": ["t"]}},
         "payload_too_large"),
        ({**ALERT, "to": {}}, "parameter_invalid"),
        ({**ALERT, "to": {"device_ids": ["nope"]}}, "parameter_invalid"),
        ({"kind": "alert", "to": {"tags": ["t"]}}, "parameter_invalid"),
    ],
)  # fmt: skip
async def test_a_push_that_cannot_be_sent_is_refused_whole(
    client: httpx.AsyncClient, database: None, body: dict[str, Any], code: str
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, 1, tags=["t"])
    response = await client.post("/v1/pushes", json=body, headers=bearer(acme.secret_key))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert await Push.all().count() == 0


async def test_a_push_goes_once_to_each_active_device_named_by_id_user_or_tag_and_no_other(
    client: httpx.AsyncClient, database: None
) -> None:
    acme, bravo = await make_tenant("Acme"), await make_tenant("Bravo")
    [by_id_and_user] = await register(client, acme, 1, user_id="ada", tags=["vip"])
    [by_user] = await register(client, acme, 1, first=1, user_id="bob")
    [by_tag] = await register(client, acme, 1, first=2, tags=["vip"])
    [invalid] = await register(client, acme, 1, first=3, tags=["vip"], user_id="ada")
    await Device.filter(id=invalid).update(status="invalid")
    await register(client, bravo, 1, first=4, user_id="ada", tags=["vip"])  # another project's
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    await client.post("/v1/devices", json={"token": "ef" * 32, "platform": "ios",
                      "user_id": "ada", "tags": ["vip"]}, headers=bearer(live))  # fmt: skip
    to = {"device_ids": [by_id_and_user], "user_ids": ["ada", "bob"], "tags": ["vip"]}
    sent = await client.post("/v1/pushes", json={**ALERT, "to": to},
                             headers=bearer(acme.secret_key))  # fmt: skip
    assert sent.status_code == 202, sent.text
    assert sent.json()["recipients"] == 3
    went_to = await Delivery.filter(push_id=sent.json()["id"]).values_list("device_id", flat=True)
    assert sorted(went_to) == sorted([by_id_and_user, by_user, by_tag])


async def test_live_pushes_need_the_platforms_credential(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    await client.post("/v1/devices", json={"token": "ab" * 32, "platform": "ios", "tags": ["t"]},
                      headers=bearer(live))  # fmt: skip
    push = {**ALERT, "to": {"tags": ["t"]}}
    response = await client.post("/v1/pushes", json=push, headers=bearer(live))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "credential_missing"
    assert await Push.filter(project_id=acme.project.id).count() == 0
    # The key's credentials are read with every request: one uploaded counts at once, and so
    # does one removed.
    uploaded = await client.put("/v1/credentials/apns", json=apns_credential(new_signing_key()),
                                headers=bearer(live))  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    sent = await client.post("/v1/pushes", json=push, headers=bearer(live))
    assert sent.status_code == 202, sent.text
    assert (await client.delete("/v1/credentials/apns", headers=bearer(live))).status_code == 200
    again = await client.post("/v1/pushes", json=push, headers=bearer(live))
    assert again.json()["error"]["code"] == "credential_missing"
    assert await Push.filter(project_id=acme.project.id).count() == 1


async def test_a_retried_request_is_answered_once_and_sends_once(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, 2, tags=["t"])
    headers = {**bearer(acme.secret_key), "Idempotency-Key": "order-42-shipped"}
    body = {**ALERT, "to": {"tags": ["t"]}}
    first, second = await asyncio.gather(
        client.post("/v1/pushes", json=body, headers=headers),
        client.post("/v1/pushes", json=body, headers=headers),
    )
    statuses = sorted([first.status_code, second.status_code])
    assert statuses in ([202, 202], [202, 409]), statuses
    replay = await client.post("/v1/pushes", json=body, headers=headers)
    assert replay.status_code == 202
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == (first if first.status_code == 202 else second).json()
    assert await Push.all().count() == 1
    assert await Delivery.all().count() == 2
    other_body = await client.post(
        "/v1/pushes", json={**body, "alert": {"title": "Other"}}, headers=headers
    )
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    # Keys are per project: another tenant may use the same key for its own push.
    other = await make_tenant("Other")
    await register(client, other, 1, tags=["t"])
    theirs = await client.post(
        "/v1/pushes", json=body,
        headers={**bearer(other.secret_key), "Idempotency-Key": "order-42-shipped"},
    )  # fmt: skip
    assert theirs.status_code == 202
    assert theirs.json()["id"] != replay.json()["id"]


async def test_a_request_still_in_flight_gets_409_and_a_failed_one_releases_its_key(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, 1, tags=["t"])
    body = {**ALERT, "to": {"tags": ["t"]}}
    fingerprint = request_fingerprint(
        "POST", "/v1/pushes", PushRequest.model_validate(body).model_dump(mode="json")
    )
    await IdempotencyKey.create(
        project=acme.project, mode=KeyMode.TEST, key="busy", request_hash=fingerprint,
        status="in_flight", expires_at=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    busy_headers = {**bearer(acme.secret_key), "Idempotency-Key": "busy"}
    busy = await client.post("/v1/pushes", json=body, headers=busy_headers)
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "idempotency_key_in_use"
    too_big = {"kind": "background", "data": {"b": "x" * 5000}, "to": {"tags": ["t"]}}
    headers = {**bearer(acme.secret_key), "Idempotency-Key": "fix-and-retry"}
    failed = await client.post("/v1/pushes", json=too_big, headers=headers)
    assert failed.status_code == 400
    assert not await IdempotencyKey.filter(key="fix-and-retry").exists()


async def test_a_scheduled_push_can_be_canceled_until_due(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, 2, tags=["t"])
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    accepted = await client.post("/v1/pushes", json={**ALERT, "to": {"tags": ["t"]},
                                                     "send_at": later},
                                 headers=bearer(acme.secret_key))  # fmt: skip
    assert accepted.json()["status"] == "scheduled"
    path = f"/v1/pushes/{accepted.json()['id']}/cancel"
    canceled = await client.post(path, headers=bearer(acme.secret_key))
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["deliveries"] == {"canceled": 2}
    again = await client.post(path, headers=bearer(acme.secret_key))
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "push_not_cancelable"


async def test_publishable_keys_cannot_send(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    _, publishable = await issue_api_key(acme.project, name="app", kind=KeyKind.PUBLISHABLE,
                                         mode=KeyMode.TEST, pepper=TEST_SECRET_KEY)  # fmt: skip
    response = await client.post("/v1/pushes", json={**ALERT, "to": {"tags": ["t"]}},
                                 headers=bearer(publishable))  # fmt: skip
    assert response.status_code == 403
    assert response.json()["error"]["param"] == "pushes:write"


async def test_canceling_a_scheduled_push_gives_its_quota_back(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, 3, tags=["t"])
    headers = bearer(acme.secret_key)

    async def used() -> tuple[int, int]:
        """The month's test pushes: its counter, and its daily series added up."""
        usage = (await client.get("/v1/usage", headers=headers)).json()
        today = sum(day["pushes"] for day in usage["daily"]["test"])
        return usage["test"]["pushes"]["used"], today

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {**ALERT, "to": {"tags": ["t"]}}
    scheduled = await client.post("/v1/pushes", json={**body, "send_at": later}, headers=headers)
    now = await client.post("/v1/pushes", json=body, headers=headers)
    assert (scheduled.status_code, now.status_code) == (202, 202)
    assert await used() == (6, 6)

    canceled = await client.post(f"/v1/pushes/{scheduled.json()['id']}/cancel", headers=headers)
    assert canceled.json()["deliveries"] == {"canceled": 3}
    assert await used() == (3, 3)  # the canceled push's three are back; the sent one stays
    refused = await client.post(f"/v1/pushes/{scheduled.json()['id']}/cancel", headers=headers)
    assert refused.status_code == 400
    assert await used() == (3, 3)  # given back once


async def test_a_send_that_reaches_nobody_or_skips_devices_says_why(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    headers = bearer(acme.secret_key)
    without_token = await register(client, acme, 2, tags=["fans"])
    await register(client, acme, 1, 10, tags=["fans"], live_activity_token="ab" * 32)
    [gone] = await register(client, acme, 1, 20, tags=["gone"])
    await Device.filter(id=gone).update(status="invalid", invalid_reason="Unregistered")
    update = {
        "kind": "liveactivity",
        "live_activity": {"event": "update", "content_state": {"score": "2-1"}},
    }

    async def send(body: dict[str, Any], **to: list[str]) -> dict[str, Any]:
        response = await client.post("/v1/pushes", json={**body, "to": to}, headers=headers)
        assert response.status_code == 202, response.text
        accepted: dict[str, Any] = response.json()
        return accepted

    def codes(accepted: dict[str, Any]) -> list[str]:
        return [warning["code"] for warning in accepted["warnings"]]

    nobody = await send(ALERT, tags=["no-such-tag"])
    assert (nobody["recipients"], codes(nobody)) == (0, ["no_recipients"])
    assert "matches no device" in nobody["warnings"][0]["message"]

    invalid = await send(ALERT, tags=["gone"])
    assert (invalid["recipients"], codes(invalid)) == (0, ["no_recipients"])
    assert "1 device" in invalid["warnings"][0]["message"]
    assert "invalid" in invalid["warnings"][0]["message"]

    some = await send(update, tags=["fans"])
    assert (some["recipients"], codes(some)) == (1, ["no_live_activity_token"])
    assert "2 iOS devices" in some["warnings"][0]["message"]

    none = await send(update, device_ids=without_token)
    assert (none["recipients"], codes(none)) == (0, ["no_recipients", "no_live_activity_token"])

    start = {"kind": "liveactivity", "live_activity": {
        "event": "start", "content_state": {"score": "0-0"}, "attributes_type": "Match",
        "attributes": {"home": "A"}}}  # fmt: skip
    assert codes(await send(start, tags=["fans"])) == ["no_recipients", "no_push_to_start_token"]

    everyone = await send(ALERT, tags=["fans"])
    assert (everyone["recipients"], everyone["warnings"]) == (3, [])
    # A retry with the same Idempotency-Key replays the warnings with the first answer.
    keyed = {**headers, "Idempotency-Key": "nobody-1"}
    body = {**ALERT, "to": {"tags": ["no-such-tag"]}}
    first = await client.post("/v1/pushes", json=body, headers=keyed)
    replay = await client.post("/v1/pushes", json=body, headers=keyed)
    assert replay.json()["warnings"] == first.json()["warnings"] != []


async def test_the_openapi_document_describes_the_warnings(client: httpx.AsyncClient) -> None:
    document = (await client.get("/v1/openapi.json")).json()
    answer = document["paths"]["/v1/pushes"]["post"]["responses"]["202"]
    ref = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    warnings = document["components"]["schemas"][ref]["properties"]["warnings"]
    warning = document["components"]["schemas"][warnings["items"]["$ref"].rsplit("/", 1)[-1]]
    assert set(warning["required"]) == {"code", "message"}
    assert {"no_recipients", "no_live_activity_token"} <= set(warning["properties"]["code"]["enum"])
