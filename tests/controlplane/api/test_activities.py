"""``/v1/activities`` over HTTP: who may do what, what is refused, the lifecycle, state reads.

Test-mode keys (the sandbox provider), no worker: what is checked here is what the API
answers and commits. Delivery through the fakes: tests/workers/test_deliver_activities.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controlplane.activities import sweep
from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.models import (
    Activity,
    ActivityStatus,
    ActivityToken,
    Delivery,
    KeyKind,
    KeyMode,
    Push,
    UsagePeriod,
)
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.servers import serving
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

IPHONE = "ab" * 32
ACTIVITY_TOKEN = "cd" * 32


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def publishable(tenant: Tenant) -> str:
    _, key = await issue_api_key(tenant.project, name="app", kind=KeyKind.PUBLISHABLE,
                                 mode=KeyMode.TEST, pepper=TEST_SECRET_KEY)  # fmt: skip
    return key


async def iphone(client: httpx.AsyncClient, key: str, token: str = IPHONE,
                 user_id: str = "ann") -> str:  # fmt: skip
    registered = await client.post("/v1/devices", headers=bearer(key), json={
        "token": token, "platform": "ios", "user_id": user_id, "push_to_start_token": "ef" * 32,
    })  # fmt: skip
    assert registered.status_code == 200, registered.text
    return str(registered.json()["id"])


async def app_started(client: httpx.AsyncClient, key: str, device_id: str,
                      activity_type: str = "OrderTracking") -> dict[str, Any]:  # fmt: skip
    registered = await client.post("/v1/activities/register", headers=bearer(key), json={
        "device_id": device_id, "token": ACTIVITY_TOKEN, "activity_type": activity_type,
        "attributes": {"order": "A-1"}, "content_state": {"eta": 30},
    })  # fmt: skip
    assert registered.status_code == 201, registered.text
    return dict(registered.json())


async def test_apps_register_and_report_tokens_but_only_servers_start_update_and_end(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    phone = await iphone(client, app_key)
    activity = await app_started(client, app_key, phone)
    assert activity["status"] == "active"
    assert activity["started_by"] == "app"
    assert activity["user_id"] == "ann"  # the device's user
    rotated = await client.post(f"/v1/activities/{activity['id']}/tokens", headers=bearer(
        app_key), json={"device_id": phone, "token": "12" * 32})  # fmt: skip
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["token"] == "…1212"
    for path, body in (
        ("/v1/activities", {"activity_type": "T", "content_state": {}, "to": {"user_ids": ["a"]}}),
        (f"/v1/activities/{activity['id']}/update", {"content_state": {"eta": 5}}),
        (f"/v1/activities/{activity['id']}/end", {}),
    ):
        refused = await client.post(path, json=body, headers=bearer(app_key))
        assert refused.status_code == 403, path
        assert refused.json()["error"]["type"] == "permission_error", path
    read = await client.get(f"/v1/activities/{activity['id']}", headers=bearer(app_key))
    assert read.status_code == 403
    stored = await Activity.get(id=activity["id"])
    assert stored.content_state == {"eta": 30}


async def test_bad_requests_are_refused_naming_the_field_and_nothing_is_written(
    client: httpx.AsyncClient, database: None
) -> None:
    acme, other = await make_tenant("Acme"), await make_tenant("Other")
    app_key = await publishable(acme)
    phone = await iphone(client, app_key)
    theirs = await iphone(client, await publishable(other), token="99" * 32)
    android = await client.post("/v1/devices", headers=bearer(app_key), json={
        "token": "android-" + "x" * 30, "platform": "android"})  # fmt: skip
    base = {"activity_type": "OrderTracking", "content_state": {"eta": 1}}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v1/activities", {**base, "to": {}}, 400, "to"),
        ("/v1/activities", {**base, "activity_type": "9 lives", "to": {"user_ids": ["a"]}}, 400,
         "activity_type"),
        ("/v1/activities", {**base, "priority": 7, "to": {"user_ids": ["a"]}}, 400, "priority"),
        ("/v1/activities/register", {**base, "device_id": phone}, 400, "token"),
        ("/v1/activities/register", {**base, "device_id": phone, "token": "xyz"}, 400, "token"),
        ("/v1/activities/register", {**base, "device_id": android.json()["id"],
                                     "token": ACTIVITY_TOKEN}, 400, "token"),
        ("/v1/activities/register", {**base, "device_id": theirs, "token": ACTIVITY_TOKEN}, 404,
         "device_id"),
    ]  # fmt: skip
    for path, body, status, param in cases:
        response = await client.post(path, json=body, headers=bearer(acme.secret_key))
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["param"] == param, (body, response.text)
    assert not await Activity.filter(project_id=acme.project.id).exists()
    started = await client.post("/v1/activities", headers=bearer(acme.secret_key), json={
        **base, "to": {"device_ids": [theirs]}})  # fmt: skip
    assert started.json()["recipients"] == 0  # another tenant's device is nobody here
    assert [w["code"] for w in started.json()["warnings"]] == ["no_recipients"]
    # Nor can its token be reported on another tenant's device.
    foreign = await client.post(f"/v1/activities/{started.json()['id']}/tokens",
                                headers=bearer(app_key),
                                json={"device_id": theirs, "token": ACTIVITY_TOKEN})  # fmt: skip
    assert (foreign.status_code, foreign.json()["error"]["param"]) == (404, "device_id")
    assert not await ActivityToken.filter(device_id=theirs).exists()


async def test_a_server_started_activity_waits_for_its_token_then_ends_and_refuses_more(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    phone = await iphone(client, app_key)
    await iphone(client, app_key, token="77" * 32, user_id="bob")
    started = await client.post("/v1/activities", headers=bearer(acme.secret_key), json={
        "activity_type": "OrderTracking", "attributes": {"order": "A-1"},
        "content_state": {"eta": 30}, "to": {"user_ids": ["ann"]},
    })  # fmt: skip
    assert started.status_code == 201, started.text
    activity = started.json()
    assert (activity["status"], activity["recipients"], activity["user_id"]) == (
        "starting",
        1,
        "ann",
    )
    push = await Push.get(id=activity["push_id"])
    assert push.content["live_activity"]["attributes"]["brik_activity_id"] == activity["id"]
    path = f"/v1/activities/{activity['id']}"
    waiting = await client.post(path + "/update", headers=bearer(acme.secret_key),
                                json={"content_state": {"eta": 20}})  # fmt: skip
    assert [w["code"] for w in waiting.json()["warnings"]] == ["no_recipients", "token_pending"]
    reported = await client.post(path + "/tokens", headers=bearer(app_key),
                                 json={"device_id": phone, "token": ACTIVITY_TOKEN})  # fmt: skip
    assert reported.json()["status"] == "active"
    detail = (await client.get(path, headers=bearer(acme.secret_key))).json()
    assert detail["status"] == "active"
    assert detail["content_state"] == {"eta": 20}
    ended = await client.post(path + "/end", headers=bearer(acme.secret_key), json={
        "content_state": {"eta": 0}, "dismissal_date": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert ended.json()["status"] == "dismissed"  # a dismissal date past: gone at once
    assert ended.json()["recipients"] == 1
    for action, body in (("/update", {"content_state": {"eta": 1}}), ("/end", {})):
        late = await client.post(path + action, headers=bearer(acme.secret_key), json=body)
        assert late.status_code == 409, late.text
        assert late.json()["error"]["code"] == "activity_ended"
    late_token = await client.post(path + "/tokens", headers=bearer(app_key),
                                   json={"device_id": phone, "token": "34" * 32})  # fmt: skip
    assert late_token.status_code == 409
    mine = await client.get("/v1/activities", params={"user_id": "ann"},
                            headers=bearer(acme.secret_key))  # fmt: skip
    assert [a["id"] for a in mine.json()["data"]] == [activity["id"]]
    nobody = await client.get("/v1/activities", params={"user_id": "bob"},
                              headers=bearer(acme.secret_key))  # fmt: skip
    assert nobody.json()["data"] == []


async def test_apple_s_limits_end_stale_and_dismiss_activities_on_reads_and_in_the_sweep(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    phone = await iphone(client, app_key)
    old, ancient, stale = [(await app_started(client, app_key, phone))["id"] for _ in range(3)]
    now = datetime.now(UTC)
    await Activity.filter(id=old).update(created_at=now - timedelta(hours=9))
    await Activity.filter(id=ancient).update(created_at=now - timedelta(hours=13))
    await Activity.filter(id=stale).update(stale_date=now - timedelta(minutes=1))
    headers = bearer(acme.secret_key)
    seen = {i: (await client.get(f"/v1/activities/{i}", headers=headers)).json()
            for i in (old, ancient, stale)}  # fmt: skip
    assert seen[old]["status"] == "ended"
    assert seen[old]["end_reason"] == "apple_limit"
    assert seen[ancient]["status"] == "dismissed"
    assert seen[stale]["status"] == "stale"
    refused = await client.post(f"/v1/activities/{old}/update", headers=headers,
                                json={"content_state": {"eta": 1}})  # fmt: skip
    assert refused.status_code == 409
    moved = await sweep(datetime.now(UTC))
    assert moved == {"ended": 1, "dismissed": 1, "stale": 1}
    statuses = dict(await Activity.filter(id__in=[old, ancient, stale]).values_list("id", "status"))
    assert statuses == {old: ActivityStatus.ENDED, ancient: ActivityStatus.DISMISSED,
                        stale: ActivityStatus.STALE}  # fmt: skip
    listed = await client.get("/v1/activities", params={"status": "stale"}, headers=headers)
    assert [a["id"] for a in listed.json()["data"]] == [stale]
    revived = await client.post(
        f"/v1/activities/{stale}/update",
        headers=headers,
        json={"content_state": {"eta": 3}, "stale_date": (now + timedelta(hours=1)).isoformat()},
    )
    assert revived.json()["status"] == "active"


async def test_a_retried_update_with_its_idempotency_key_is_sent_once(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    activity = await app_started(client, app_key, await iphone(client, app_key))
    headers = {**bearer(acme.secret_key), "Idempotency-Key": "update-eta-20"}
    path = f"/v1/activities/{activity['id']}/update"
    first = await client.post(path, headers=headers, json={"content_state": {"eta": 20}})
    again = await client.post(path, headers=headers, json={"content_state": {"eta": 20}})
    assert again.json() == first.json()
    assert await Push.filter(activity_id=activity["id"]).count() == 1
    stored = await Activity.get(id=activity["id"])
    assert stored.version == 2  # registered, then one update


async def test_an_activity_s_content_state_reads_as_state_and_cannot_be_written_there(
    client: httpx.AsyncClient, database: None
) -> None:
    acme, other = await make_tenant("Acme"), await make_tenant("Other")
    app_key = await publishable(acme)
    activity = await app_started(client, app_key, await iphone(client, app_key))
    key = f"activity:{activity['id']}"
    await client.post(f"/v1/activities/{activity['id']}/update", headers=bearer(
        acme.secret_key), json={"content_state": {"eta": 12}})  # fmt: skip
    read = await client.get(f"/v1/state/{key}", headers=bearer(app_key))
    assert read.status_code == 200, read.text
    assert read.json()["value"] == {"eta": 12}
    assert read.json()["version"] == 2
    assert read.headers["etag"] == read.json()["etag"]
    written = await client.put(f"/v1/state/{key}", headers=bearer(acme.secret_key),
                               json={"value": {"eta": 0}})  # fmt: skip
    assert written.status_code == 400
    assert written.json()["error"]["code"] == "reserved_key"
    foreign = await client.get(f"/v1/state/{key}", headers=bearer(other.secret_key))
    assert foreign.status_code == 404
    missing = await client.get("/v1/state/activity:act_aaaaaaaaaaaaaaaaaaaaaaaa",
                               headers=bearer(app_key))  # fmt: skip
    assert missing.status_code == 404


async def test_a_test_mode_broadcast_gets_a_sandbox_channel_and_needs_no_recipients(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    headers = bearer(acme.secret_key)
    nobody = await client.post("/v1/activities", headers=headers, json={
        "activity_type": "Launch", "content_state": {"t": -60}})  # fmt: skip
    assert nobody.status_code == 400
    assert nobody.json()["error"]["param"] == "to"
    launch = await client.post("/v1/activities", headers=headers, json={
        "activity_type": "Launch", "content_state": {"t": -60}, "broadcast": True})  # fmt: skip
    assert launch.status_code == 201, launch.text
    assert launch.json()["channel_id"]
    assert launch.json()["status"] == "active"
    update = await client.post(f"/v1/activities/{launch.json()['id']}/update", headers=headers,
                               json={"content_state": {"t": -30}})  # fmt: skip
    assert update.json()["recipients"] == 1  # one request, to the channel


async def test_an_update_right_after_the_start_never_supersedes_the_start(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    await iphone(client, app_key)
    await client.post("/v1/devices", headers=bearer(app_key), json={
        "token": "android-" + "y" * 30, "platform": "android", "user_id": "ann"})  # fmt: skip
    headers = bearer(acme.secret_key)
    started = (await client.post("/v1/activities", headers=headers, json={
        "activity_type": "OrderTracking", "content_state": {"eta": 30},
        "to": {"user_ids": ["ann"]}})).json()  # fmt: skip
    path = f"/v1/activities/{started['id']}/update"
    first = (await client.post(path, headers=headers, json={"content_state": {"eta": 20}})).json()
    await client.post(path, headers=headers, json={"content_state": {"eta": 10}})
    start_push = await Push.get(id=started["push_id"])
    assert start_push.status == "queued"  # both start deliveries still go (no worker here)
    assert await Delivery.filter(push_id=started["push_id"], status="queued").count() == 2
    # The older update to the Android phone is what the newer one replaced.
    assert await Delivery.filter(push_id=first["push_id"]).values_list("status", flat=True) == [
        "superseded"
    ]


async def test_twenty_updates_racing_on_one_activity_leave_the_newest_and_only_it_queued(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    activity = await app_started(client, app_key, await iphone(client, app_key))
    path = f"/v1/activities/{activity['id']}/update"
    headers = bearer(acme.secret_key)
    # They queue on the activity's row lock, one after another: on a busy machine the last
    # waits longer than httpx's default 5 s, which says nothing about correctness.
    answers = await asyncio.gather(*(
        client.post(path, headers=headers, json={"content_state": {"eta": n}}, timeout=60)
        for n in range(20)
    ))  # fmt: skip
    assert [a.status_code for a in answers] == [200] * 20
    sent = [a.json() for a in answers]
    stamps = sorted(s["timestamp"] for s in sent)
    assert len(set(stamps)) == 20  # each strictly newer than the one accepted before it
    newest = max(sent, key=lambda s: s["timestamp"])
    stored = await Activity.get(id=activity["id"])
    assert stored.content_state == newest["content_state"]
    assert stored.last_timestamp == newest["timestamp"]
    queued = await Delivery.filter(push__activity_id=activity["id"], status="queued").values_list(
        "push_id", flat=True
    )
    assert queued == [newest["push_id"]]  # every older update superseded, never sent


async def test_an_app_cannot_register_an_activity_whose_state_no_push_could_carry(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    phone = await iphone(client, app_key)
    for field in ("content_state", "attributes"):
        registered = await client.post("/v1/activities/register", headers=bearer(app_key), json={
            "device_id": phone, "token": ACTIVITY_TOKEN, "activity_type": "OrderTracking",
            "content_state": {"eta": 30}, field: {"note": "x" * 500_000},
        })  # fmt: skip
        # Refused as a start from the server would be: its state goes out with every update
        # and end (an end without a new state would fail), and apps hold only a public key.
        assert registered.status_code == 400, registered.text[:300]
        assert registered.json()["error"]["code"] == "payload_too_large"
    assert not await Activity.filter(project_id=acme.project.id).exists()


async def test_a_stale_activity_updated_without_a_new_stale_date_is_active_again(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    activity = await app_started(client, app_key, await iphone(client, app_key))
    await Activity.filter(id=activity["id"]).update(
        stale_date=datetime.now(UTC) - timedelta(minutes=1)
    )
    headers = bearer(acme.secret_key)
    updated = await client.post(f"/v1/activities/{activity['id']}/update", headers=headers,
                                json={"content_state": {"eta": 3}})  # fmt: skip
    assert updated.json()["status"] == "active"  # docs/activities.md: "an update makes it active"
    read = await client.get(f"/v1/activities/{activity['id']}", headers=headers)
    assert read.json()["status"] == "active"
    await sweep(datetime.now(UTC))
    listed = await client.get("/v1/activities", params={"status": "active"}, headers=headers)
    assert [a["id"] for a in listed.json()["data"]] == [activity["id"]]


async def test_a_starting_activity_past_its_stale_date_is_listed_as_stale_after_the_sweep(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    await iphone(client, app_key)
    headers = bearer(acme.secret_key)
    started = (await client.post("/v1/activities", headers=headers, json={
        "activity_type": "OrderTracking", "content_state": {"eta": 30},
        "to": {"user_ids": ["ann"]}})).json()  # fmt: skip
    assert started["status"] == "starting"
    await Activity.filter(id=started["id"]).update(
        stale_date=datetime.now(UTC) - timedelta(minutes=1)
    )
    read = await client.get(f"/v1/activities/{started['id']}", headers=headers)
    assert read.json()["status"] == "stale"
    assert await sweep(datetime.now(UTC)) == {"stale": 1}
    for status, ids in (("stale", [started["id"]]), ("starting", [])):
        listed = await client.get("/v1/activities", params={"status": status}, headers=headers)
        assert [a["id"] for a in listed.json()["data"]] == ids, status


async def test_an_activity_changed_faster_than_once_a_second_for_long_is_told_to_slow_down(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    app_key = await publishable(acme)
    activity = await app_started(client, app_key, await iphone(client, app_key))
    # A minute's burst already spent, and five seconds more: still refused if the clock ticks
    # between here and the server.
    ahead = int(datetime.now(UTC).timestamp()) + 65
    await Activity.filter(id=activity["id"]).update(last_timestamp=ahead)
    refused = await client.post(f"/v1/activities/{activity['id']}/update", headers=bearer(
        acme.secret_key), json={"content_state": {"eta": 1}})  # fmt: skip
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "activity_update_rate"
    assert 4 <= int(refused.headers["retry-after"]) <= 6
    stored = await Activity.get(id=activity["id"])
    assert (stored.content_state, stored.last_timestamp) == ({"eta": 30}, ahead)
    assert not await Push.filter(activity_id=activity["id"]).exists()


async def test_an_activity_ends_even_past_the_month_s_quota_while_updates_are_refused(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(plan_free_pushes_per_month=1)
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        acme = await make_tenant("Acme")
        app_key = await publishable(acme)
        activity = await app_started(client, app_key, await iphone(client, app_key))
        path, headers = f"/v1/activities/{activity['id']}", bearer(acme.secret_key)
        used = await client.post(path + "/update", headers=headers,
                                 json={"content_state": {"eta": 20}})  # fmt: skip
        assert used.status_code == 200, used.text
        await Delivery.filter(push_id=used.json()["push_id"]).update(status="delivered")
        refused = await client.post(path + "/update", headers=headers,
                                    json={"content_state": {"eta": 10}})  # fmt: skip
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "quota_exceeded"
        assert refused.json()["error"]["param"] is None  # no `to` on this route
        ended = await client.post(path + "/end", headers=headers,
                                  json={"content_state": {"eta": 0}})  # fmt: skip
        assert ended.status_code == 200, ended.text
        assert ended.json()["recipients"] == 1
        usage = await UsagePeriod.get(organization_id=acme.organization.id, mode=KeyMode.TEST)
        assert usage.pushes == 2  # the end is counted, past the quota
