"""Devices: registered by token (upserted), validated per platform, encrypted, scoped by mode."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.peppers import PepperRing
from controlplane.crypto import KeyRing
from controlplane.models import Device, KeyKind, KeyMode
from controlplane.rehashing import rehash_devices
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.secret_keys import (
    ENCRYPTION_KEY,
    NEW,
    NEW_SECRET_KEY,
    OLD,
    OLD_SECRET_KEY,
    Stage,
    api_at,
    stage_settings,
)
from tests.support.servers import running_worker
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

IOS_TOKEN = "AB" * 32
ANDROID_TOKEN = "fcm:" + "x" * 150


async def keys(tenant_name: str = "Acme") -> tuple[dict[str, str], dict[str, str], object]:
    acme = await make_tenant(tenant_name)
    _, publishable = await issue_api_key(
        acme.project, name="app", kind=KeyKind.PUBLISHABLE, mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY,
    )  # fmt: skip
    return (
        {"Authorization": f"Bearer {publishable}"},
        {"Authorization": f"Bearer {acme.secret_key}"},
        acme,
    )


async def test_an_app_registers_its_device_and_later_updates_it(
    client: httpx.AsyncClient, database: None
) -> None:
    app_key, server_key, _ = await keys()
    first = await client.post(
        "/v1/devices",
        json={"token": IOS_TOKEN, "platform": "ios", "user_id": "u_42", "tags": ["beta", "beta"]},
        headers=app_key,
    )
    assert first.status_code == 200, first.text
    device = first.json()
    assert device["created"] is True
    # iOS tokens are hex: stored lower-case, so the same device registers once.
    assert (device["token"], device["tags"], device["mode"]) == ("…abab", ["beta"], "test")
    again = await client.post(
        "/v1/devices",
        json={"token": IOS_TOKEN.lower(), "platform": "ios", "user_id": "u_43",
              "live_activity_token": "cd" * 32},
        headers=app_key,
    )  # fmt: skip
    assert again.json()["created"] is False
    assert again.json()["id"] == device["id"]
    assert again.json()["user_id"] == "u_43"
    assert again.json()["has_live_activity_token"] is True
    assert await Device.all().count() == 1
    row = await Device.get()
    assert IOS_TOKEN.lower() not in row.token_encrypted
    # Publishable keys register; reading devices needs a secret key.
    assert (await client.get("/v1/devices", headers=app_key)).status_code == 403
    listed = await client.get("/v1/devices", params={"user_id": "u_43"}, headers=server_key)
    assert [d["id"] for d in listed.json()["data"]] == [device["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"token": "not-hex" * 10, "platform": "ios"},
        {"token": "ab" * 10, "platform": "ios"},
        {"token": "short", "platform": "android"},
        {"token": ANDROID_TOKEN, "platform": "android", "live_activity_token": "cd" * 32},
        {"token": IOS_TOKEN, "platform": "windows"},
        {"token": IOS_TOKEN, "platform": "ios", "tags": ["has space"]},
        {"token": IOS_TOKEN, "platform": "ios", "tags": ["t"] * 51},
        {"token": ANDROID_TOKEN, "platform": "android", "widget_push_token": "cd" * 32},
        {"token": IOS_TOKEN, "platform": "ios", "widget_push_token": "not-hex" * 10},
        {"token": IOS_TOKEN, "platform": "ios", "widget_push_token": "cd" * 101},
    ],
)
async def test_tokens_are_validated_per_platform(
    client: httpx.AsyncClient, database: None, body: dict[str, object]
) -> None:
    app_key, _, _ = await keys()
    response = await client.post("/v1/devices", json=body, headers=app_key)
    assert response.status_code == 400, response.text
    assert await Device.all().count() == 0


async def test_an_ios_26_app_registers_its_widget_push_token_encrypted(
    client: httpx.AsyncClient, database: None
) -> None:
    app_key, server_key, _ = await keys()
    widget_token = "7A" * 32
    registered = await client.post(
        "/v1/devices",
        json={"token": IOS_TOKEN, "platform": "ios", "widget_push_token": widget_token},
        headers=app_key,
    )
    assert registered.status_code == 200, registered.text
    device = registered.json()
    assert (device["has_widget_push_token"], device["has_live_activity_token"]) == (True, False)
    row = await Device.get(id=device["id"])
    assert row.widget_push_token_encrypted is not None
    assert widget_token.lower() not in row.widget_push_token_encrypted
    assert widget_token not in row.widget_push_token_encrypted
    read = await client.get(f"/v1/devices/{device['id']}", headers=server_key)
    assert read.json()["has_widget_push_token"] is True
    assert widget_token.lower() not in read.text
    # Registering again is an upsert of the whole registration: an app that no longer has a
    # widget push token (its widgets gone) sends none, and none is kept.
    again = await client.post(
        "/v1/devices", json={"token": IOS_TOKEN, "platform": "ios"}, headers=app_key
    )
    assert (again.json()["id"], again.json()["has_widget_push_token"]) == (device["id"], False)


async def test_filters_and_delete(client: httpx.AsyncClient, database: None) -> None:
    app_key, server_key, _ = await keys()
    await client.post("/v1/devices", json={"token": IOS_TOKEN, "platform": "ios",
                                           "tags": ["beta"]}, headers=app_key)  # fmt: skip
    android = await client.post(
        "/v1/devices", json={"token": ANDROID_TOKEN, "platform": "android"}, headers=app_key
    )
    beta = await client.get("/v1/devices", params={"tag": "beta"}, headers=server_key)
    assert [d["platform"] for d in beta.json()["data"]] == ["ios"]
    droid = await client.get("/v1/devices", params={"platform": "android"}, headers=server_key)
    assert [d["id"] for d in droid.json()["data"]] == [android.json()["id"]]
    path = f"/v1/devices/{android.json()['id']}"
    assert (await client.get(path, headers=server_key)).json()["platform"] == "android"
    assert (await client.delete(path, headers=server_key)).json()["deleted"] is True
    assert (await client.get(path, headers=server_key)).status_code == 404


async def test_test_keys_and_live_keys_see_separate_devices(
    client: httpx.AsyncClient, database: None
) -> None:
    app_key, test_server, acme = await keys()
    _, live_secret = await issue_api_key(
        acme.project, name="live", kind=KeyKind.SECRET, mode=KeyMode.LIVE,  # type: ignore[attr-defined]
        pepper=TEST_SECRET_KEY,
    )  # fmt: skip
    live = {"Authorization": f"Bearer {live_secret}"}
    registered = await client.post(
        "/v1/devices", json={"token": IOS_TOKEN, "platform": "ios"}, headers=app_key
    )
    device_id = registered.json()["id"]
    assert (await client.get(f"/v1/devices/{device_id}", headers=live)).status_code == 404
    assert (await client.get("/v1/devices", headers=live)).json()["data"] == []
    assert len((await client.get("/v1/devices", headers=test_server)).json()["data"]) == 1


async def test_only_a_secret_key_deletes_devices_by_id(
    client: httpx.AsyncClient, database: None
) -> None:
    # A publishable key ships inside every copy of the app: whoever unpacks one must not be
    # able to walk the project's devices away.
    app_key, server_key, _ = await keys()
    device = await client.post("/v1/devices", json={"token": IOS_TOKEN, "platform": "ios"},
                               headers=app_key)  # fmt: skip
    path = f"/v1/devices/{device.json()['id']}"
    refused = await client.delete(path, headers=app_key)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "secret_key_required"
    assert (await client.get(path, headers=server_key)).status_code == 200
    assert (await client.delete(path, headers=server_key)).status_code == 200


async def test_an_app_unregisters_the_device_whose_token_it_holds(
    client: httpx.AsyncClient, database: None
) -> None:
    app_key, server_key, _ = await keys()
    mine = await client.post("/v1/devices", json={"token": IOS_TOKEN, "platform": "ios"},
                             headers=app_key)  # fmt: skip
    other = await client.post(
        "/v1/devices", json={"token": ANDROID_TOKEN, "platform": "android"}, headers=app_key
    )
    unregister = "/v1/devices/unregister"
    # The token as the app has it (APNs tokens are matched whatever their case).
    gone = await client.post(unregister, json={"token": IOS_TOKEN.lower(), "platform": "ios"},
                             headers=app_key)  # fmt: skip
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"object": "device", "id": mine.json()["id"], "deleted": True}
    assert (
        await client.get(f"/v1/devices/{mine.json()['id']}", headers=server_key)
    ).status_code == 404
    # Nothing else is touched, and a token nobody registered reaches nothing.
    again = await client.post(unregister, json={"token": IOS_TOKEN, "platform": "ios"},
                              headers=app_key)  # fmt: skip
    assert again.status_code == 404
    assert again.json()["error"]["param"] == "token"
    assert (await client.get(f"/v1/devices/{other.json()['id']}", headers=server_key)).is_success


async def test_concurrent_first_registrations_of_one_token_make_one_device(
    client: httpx.AsyncClient, database: None
) -> None:
    """An app launched on many threads, or retrying: 30 registrations of a new token at once."""
    app_key, _, _ = await keys()
    warm = await client.post("/v1/devices", headers=app_key,
                             json={"token": "cd" * 32, "platform": "ios"})  # fmt: skip
    assert warm.status_code == 200
    body = {"token": IOS_TOKEN, "platform": "ios", "user_id": "u_1", "tags": ["t"]}
    answers = await asyncio.gather(
        *(client.post("/v1/devices", json=body, headers=app_key) for _ in range(30))
    )
    assert [a.status_code for a in answers] == [200] * 30, [a.text for a in answers]
    assert sorted(a.json()["created"] for a in answers) == [False] * 29 + [True]
    [device] = await Device.filter(user_id="u_1")
    assert {a.json()["id"] for a in answers} == {device.id}
    assert device.tags == ["t"]


# --- rotating the secret key (controlplane/auth/peppers.py) -------------------------------------


async def old_devices(client: httpx.AsyncClient, app_key: dict[str, str]) -> dict[str, str]:
    """Devices registered under the old secret key alone: token → id."""
    ids = {}
    for token, platform in (("a1" * 32, "ios"), ("b2" * 32, "ios"), ("c3" * 32, "ios"),
                            (ANDROID_TOKEN, "android")):  # fmt: skip
        registered = await client.post(
            "/v1/devices", json={"token": token, "platform": platform}, headers=app_key
        )
        assert registered.status_code == 200, registered.text
        ids[token] = registered.json()["id"]
    return ids


async def test_a_device_registered_under_the_old_secret_key_stays_one_device_through_a_rotation(
    make_settings: Callable[..., Settings], database: None
) -> None:
    app_key, _, _ = await keys()
    async with api_at(make_settings, "before") as before:
        ids = await old_devices(before, app_key)
    moved, unregistered, left, android = ids
    async with api_at(make_settings, "promoted") as promoted:
        # Registering again finds the same device (upper-case: iOS tokens are hex) and moves it
        # to the new key.
        again = await promoted.post("/v1/devices", headers=app_key,
                                    json={"token": moved.upper(), "platform": "ios",
                                          "user_id": "u_9"})  # fmt: skip
        assert (again.json()["id"], again.json()["created"]) == (ids[moved], False)
        assert again.json()["user_id"] == "u_9"
        row = await Device.get(id=ids[moved])
        assert (row.token_hash, row.pepper_id) == (NEW.hash(moved), NEW.current.id)
        # An app signing out reaches its device under the old key too.
        gone = await promoted.post("/v1/devices/unregister", headers=app_key,
                                   json={"token": unregistered, "platform": "ios"})  # fmt: skip
        assert gone.json() == {"object": "device", "id": ids[unregistered], "deleted": True}
        # Those nobody registered since are still under the old key, and found by it.
        assert (await Device.get(id=ids[left])).token_hash == OLD.hash(left)
    report = await rehash_devices(PepperRing([NEW_SECRET_KEY, OLD_SECRET_KEY]),
                                  KeyRing([ENCRYPTION_KEY]))  # fmt: skip
    assert report.as_dict() == {"rehashed": 2, "undecryptable": [], "conflicts": []}
    async with api_at(make_settings, "dropped") as dropped:
        for token, platform in ((moved, "ios"), (left, "ios"), (android, "android")):
            again = await dropped.post(
                "/v1/devices", json={"token": token, "platform": platform}, headers=app_key
            )
            assert (again.json()["id"], again.json()["created"]) == (ids[token], False)
        gone = await dropped.post("/v1/devices/unregister", headers=app_key,
                                  json={"token": left, "platform": "ios"})  # fmt: skip
        assert gone.status_code == 200, gone.text
    assert sorted(await Device.all().values_list("id", flat=True)) == sorted(
        [ids[moved], ids[android]]
    )


async def test_first_registrations_on_processes_of_either_key_make_one_device(
    make_settings: Callable[..., Settings], database: None
) -> None:
    """While the new key is promoted, processes writing with the old key and with the new one
    serve side by side: one new token registered on both at once is still one device."""
    app_key, _, _ = await keys()
    tokens = [secrets.token_hex(32) for _ in range(12)]
    async with (
        api_at(make_settings, "added") as added,
        api_at(make_settings, "promoted") as promoted,
    ):
        answers = await asyncio.gather(*(
            client.post("/v1/devices", json={"token": token, "platform": "ios"}, headers=app_key)
            for token in tokens for client in (added, promoted, added, promoted)
        ))  # fmt: skip
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    assert await Device.all().count() == len(tokens)
    for number, token in enumerate(tokens):
        mine = answers[4 * number : 4 * number + 4]
        assert len({a.json()["id"] for a in mine}) == 1, token
        assert sorted(a.json()["created"] for a in mine) == [False, False, False, True]


async def push_until_final(client: httpx.AsyncClient, secret_key: str) -> dict[str, Any]:
    """A push to every device, once completed (a safety deadline, not a timing assertion)."""
    server_key = {"Authorization": f"Bearer {secret_key}"}
    accepted = await client.post(
        "/v1/pushes", json={"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["all"]}},
        headers=server_key,
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 60
    while True:
        push = (await client.get(f"/v1/pushes/{accepted.json()['id']}", headers=server_key)).json()
        if push["status"] == "completed":
            return dict(push)
        assert time.monotonic() < deadline, push
        await asyncio.sleep(0.05)


async def test_a_provider_invalidates_an_old_key_device_before_and_after_the_rehash(
    make_settings: Callable[..., Settings], database: None
) -> None:
    """The sandbox's ``…410`` token is Unregistered at APNs: the worker marks the device invalid
    (by id), and the app registering it again revives that same device, whichever key."""
    app_key, _, acme = await keys()
    dead = {"token": "0" * 61 + "410", "platform": "ios", "tags": ["all"]}
    async with api_at(make_settings, "before") as before:
        device_id = (await before.post("/v1/devices", json=dead, headers=app_key)).json()["id"]
    await Device.filter(id=device_id).update(pepper_id=None)  # as written before the upgrade

    async def push_to_all(stage: Stage) -> Device:
        async with (
            api_at(make_settings, stage) as api,
            running_worker(stage_settings(make_settings, stage)),
        ):
            push = await push_until_final(api, acme.secret_key)  # type: ignore[attr-defined]
        assert push["deliveries"] == {"invalid_token": 1}
        row = await Device.get(id=device_id)
        assert (row.status.value, row.invalid_reason) == ("invalid", "Unregistered")
        return row

    # Under the rotation, still hashed with the old key. (The app runs meanwhile, so its
    # publishable key moves to the new key; an unused one would be refused once the old goes.)
    assert (await push_to_all("promoted")).token_hash == OLD.hash(dead["token"])
    async with api_at(make_settings, "promoted") as promoted:
        other = await promoted.post("/v1/devices", headers=app_key,
                                    json={"token": "ef" * 32, "platform": "ios"})  # fmt: skip
        assert other.status_code == 200, other.text
    ring = PepperRing([NEW_SECRET_KEY, OLD_SECRET_KEY])
    assert (await rehash_devices(ring, KeyRing([ENCRYPTION_KEY]))).rehashed == 1
    # The old key gone: the app's registration finds its invalidated device and revives it.
    async with api_at(make_settings, "dropped") as dropped:
        again = await dropped.post("/v1/devices", json=dead, headers=app_key)
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["status"]) == (device_id, "active")
    assert (await push_to_all("dropped")).token_hash == NEW.hash(dead["token"])
    assert await Device.all().count() == 2
