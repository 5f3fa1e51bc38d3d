"""An end user's data: exported whole, erased without a trace in the database, others' kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from controlplane.models import (
    Activity,
    AnalyticsEvent,
    AuditEvent,
    Delivery,
    Device,
    KeyMode,
    Push,
    StateEntry,
    StateUsage,
)
from tests.support.databases import dump_database
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

ALICE = "alice-erasable-7f3k"  # strings chosen to occur nowhere else in a dump
BOB = "bob-keeper-9q2w"
ALICE_IOS = "a1" * 32
ALICE_START = "a2" * 32
ALICE_ANDROID = "fcm:alice-android-registration-" + "z" * 40
BOB_IOS = "b1" * 32


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def populate(client: httpx.AsyncClient, acme: Tenant) -> dict[str, Any]:
    """Two users of one project, each with devices, state, events; pushes to both."""
    server = bearer(acme.secret_key)
    devices: dict[str, str] = {}
    for name, body in {
        "alice_ios": {"token": ALICE_IOS, "platform": "ios", "user_id": ALICE,
                      "push_to_start_token": ALICE_START, "tags": ["vip"]},
        "alice_android": {"token": ALICE_ANDROID, "platform": "android", "user_id": ALICE},
        "bob_ios": {"token": BOB_IOS, "platform": "ios", "user_id": BOB, "tags": ["vip"]},
    }.items():  # fmt: skip
        registered = await client.post("/v1/devices", json=body, headers=server)
        assert registered.status_code == 200, registered.text
        devices[name] = registered.json()["id"]
    for user in (ALICE, BOB):
        for key in (f"user:{user}", f"user:{user}:profile"):
            put = await client.put(f"/v1/state/{key}", json={"value": {"who": user}},
                                   headers=server)  # fmt: skip
            assert put.status_code in (200, 201), put.text
    now = datetime.now(UTC)
    for number, (user, device) in enumerate(
        [(ALICE, None), (None, devices["alice_ios"]), (BOB, None)]
    ):
        await AnalyticsEvent.create(
            project=acme.project, mode=KeyMode.TEST, client_id=f"event-{number}",
            name="widget.click", occurred_at=now, received_at=now, user_id=user,
            device_id=device, widget="Score",
        )  # fmt: skip
    push = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"},
                            "to": {"user_ids": [ALICE, BOB]}},
        headers={**server, "Idempotency-Key": "push-both-users"},
    )  # fmt: skip
    assert push.status_code == 202, push.text
    started = await client.post(
        "/v1/activities", json={"activity_type": "OrderTracking", "attributes": {"order": "42"},
                                "content_state": {"eta": 9}, "to": {"user_ids": [ALICE]}},
        headers=server,
    )  # fmt: skip
    assert started.status_code in (200, 201, 202), started.text
    return {"devices": devices, "push_id": push.json()["id"], "activity_id": started.json()["id"]}


async def test_a_user_export_holds_everything_of_theirs_and_nothing_of_others(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    made = await populate(client, acme)
    response = await client.get(f"/v1/users/{ALICE}/export", headers=bearer(acme.secret_key))
    assert response.status_code == 200, response.text
    exported = response.json()
    assert BOB not in response.text
    assert (exported["object"], exported["user_id"], exported["mode"]) == (
        "user_export", ALICE, "test",
    )  # fmt: skip
    tokens = {device["id"]: device["token"] for device in exported["devices"]}
    assert tokens == {made["devices"]["alice_ios"]: ALICE_IOS,
                      made["devices"]["alice_android"]: ALICE_ANDROID}  # fmt: skip
    ios = next(d for d in exported["devices"] if d["platform"] == "ios")
    assert ios["push_to_start_token"] == ALICE_START
    assert sorted(entry["key"] for entry in exported["state"]) == [
        f"user:{ALICE}", f"user:{ALICE}:profile",
    ]  # fmt: skip
    assert sorted(event["id"] for event in exported["events"]) == ["event-0", "event-1"]
    assert [a["id"] for a in exported["activities"]] == [made["activity_id"]]
    assert len(exported["deliveries"]) >= 2  # the push to both users reached her two phones
    assert {d["device_id"] for d in exported["deliveries"]} <= set(tokens)
    audit = await AuditEvent.get(action="end_user.exported")
    assert ALICE not in str(audit.details)
    assert audit.target_id
    assert ALICE not in audit.target_id

    # A user nobody named has nothing to export.
    nobody = await client.get("/v1/users/nobody-at-all/export", headers=bearer(acme.secret_key))
    assert nobody.status_code == 200
    assert all(nobody.json()[kind] == [] for kind in ("devices", "state", "events"))


async def test_erasing_a_user_leaves_nothing_of_them_in_a_database_dump(
    client: httpx.AsyncClient, database: None, database_url: str
) -> None:
    acme = await make_tenant("Acme")
    made = await populate(client, acme)
    deliveries_before = await Delivery.filter(push_id=made["push_id"]).count()
    bytes_before = (await StateUsage.get(organization=acme.organization, mode=KeyMode.TEST)).bytes
    alice_bytes = sum(
        entry.size_bytes
        for entry in await StateEntry.filter(project=acme.project, key__contains=ALICE)
    )
    assert alice_bytes > 0

    erased = await client.delete(f"/v1/users/{ALICE}", headers=bearer(acme.secret_key))
    assert erased.status_code == 200, erased.text
    counts = erased.json()["erased"]
    assert counts["devices"] == 2
    assert counts["state_entries"] == 2
    assert counts["events"] == 2
    assert counts["activities_anonymised"] == 1
    assert counts["deliveries_anonymised"] >= 2
    assert counts["pushes_anonymised"] == 1

    dump = dump_database(database_url)
    assert BOB in dump  # the dump is real and complete
    assert acme.owner.user.email in dump
    for trace in (ALICE, ALICE_IOS, ALICE_START, ALICE_ANDROID, ALICE_ANDROID[4:]):
        assert trace not in dump, f"{trace[:16]}… is still in the database"

    # Deliveries are kept for counts, without the device; Bob's data is untouched.
    assert await Delivery.filter(push_id=made["push_id"]).count() == deliveries_before
    push = await Push.get(id=made["push_id"])
    assert push.target["user_ids"] == [BOB]
    assert await Device.filter(user_id=BOB).count() == 1
    assert await StateEntry.filter(project=acme.project, key__startswith=f"user:{BOB}").count() == 2
    assert await AnalyticsEvent.filter(user_id=BOB).count() == 1
    activity = await Activity.get(id=made["activity_id"])
    assert (activity.user_id, activity.attributes, activity.content_state) == (None, {}, {})
    usage = await StateUsage.get(organization=acme.organization, mode=KeyMode.TEST)
    assert usage.bytes == bytes_before - alice_bytes  # given back to the plan
    bob = await client.get(f"/v1/users/{BOB}/export", headers=bearer(acme.secret_key))
    assert [d["token"] for d in bob.json()["devices"]] == [BOB_IOS]

    # Erasing again is harmless and says there was nothing left.
    again = await client.delete(f"/v1/users/{ALICE}", headers=bearer(acme.secret_key))
    assert again.status_code == 200
    assert set(again.json()["erased"].values()) == {0}
    assert await AuditEvent.filter(action="end_user.erased").count() == 2


async def test_users_need_a_secret_key_with_the_users_scopes(
    client: httpx.AsyncClient, database: None
) -> None:
    from controlplane.auth.api_keys import issue_api_key
    from controlplane.models import KeyKind
    from tests.conftest import TEST_SECRET_KEY

    acme = await make_tenant("Acme")
    await populate(client, acme)
    _, publishable = await issue_api_key(
        acme.project, name="app", kind=KeyKind.PUBLISHABLE, mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY,
    )  # fmt: skip
    _, narrow = await issue_api_key(
        acme.project, name="reader", kind=KeyKind.SECRET, mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY, scopes=["users:read"],
    )  # fmt: skip
    app = await client.delete(f"/v1/users/{ALICE}", headers=bearer(publishable))
    assert app.status_code == 403
    reader = await client.delete(f"/v1/users/{ALICE}", headers=bearer(narrow))
    assert (reader.status_code, reader.json()["error"]["param"]) == (403, "users:write")
    assert (
        await client.get(f"/v1/users/{ALICE}/export", headers=bearer(narrow))
    ).status_code == 200
    # A live key sees none of the test-mode user's data.
    _, live = await issue_api_key(
        acme.project, name="live", kind=KeyKind.SECRET, mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY,
    )  # fmt: skip
    erased = await client.delete(f"/v1/users/{ALICE}", headers=bearer(live))
    assert set(erased.json()["erased"].values()) == {0}
    assert await Device.filter(user_id=ALICE).count() == 2
    for bad in ("x" * 201, "nul%00byte"):
        refused = await client.get(f"/v1/users/{bad}/export", headers=bearer(narrow))
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "user_id"
