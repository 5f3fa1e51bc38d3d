"""Devices: registered by token (upserted), validated per platform, encrypted, scoped by mode."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import Device, KeyKind, KeyMode
from tests.conftest import TEST_SECRET_KEY
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
