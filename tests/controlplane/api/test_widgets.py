"""Reloading widgets: the data stored as public state and the push accepted, together or not at
all; who may call it; what the 202 says about devices left out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import Delivery, KeyKind, KeyMode, Push, StateEntry, StateUsage
from tests.conftest import TEST_SECRET_KEY
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

IOS_26 = {"widget_push_token": "c0" * 32}  # what an app on iOS 26+ registers beside its token


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def publishable(tenant: Tenant) -> dict[str, str]:
    _, key = await issue_api_key(tenant.project, name="app", kind=KeyKind.PUBLISHABLE,
                                 mode=KeyMode.TEST, pepper=TEST_SECRET_KEY)  # fmt: skip
    return bearer(key)


async def register(
    client: httpx.AsyncClient, tenant: Tenant, token: str, platform: str = "ios", **extra: Any
) -> str:
    response = await client.post(
        "/v1/devices", json={"token": token, "platform": platform, "tags": ["fans"], **extra},
        headers=bearer(tenant.secret_key),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def reload(
    client: httpx.AsyncClient, tenant: Tenant, kind: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(
        f"/v1/widgets/{kind}/reload", json=body, headers={**bearer(tenant.secret_key), **headers}
    )


async def test_a_reload_stores_the_data_as_public_state_and_sends_a_widget_push(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    new_ios = await register(client, acme, "01" * 32, **IOS_26)
    android = await register(client, acme, "brik-sandbox:" + "w" * 20, "android")
    old_ios = await register(client, acme, "02" * 32)  # iOS before 26: no widget push token

    response = await reload(
        client, acme, "OrderWidget", {"to": {"tags": ["fans"]}, "data": {"eta_minutes": 12}}
    )

    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["object"], answer["recipients"], answer["widget_kind"]) == (
        "push", 2, "OrderWidget",
    )  # fmt: skip
    assert answer["state"]["key"] == "widget:OrderWidget"
    assert (answer["state"]["value"], answer["state"]["public"]) == ({"eta_minutes": 12}, True)
    [warning] = answer["warnings"]
    assert warning["code"] == "no_widget_push_token"
    assert "1 iOS device was skipped" in warning["message"]
    assert "background push" in warning["message"]  # what to do for iOS before 26
    # A tracked push like any other: readable, with its deliveries, and counted in the quota.
    push = await client.get(f"/v1/pushes/{answer['id']}", headers=bearer(acme.secret_key))
    assert push.json()["kind"] == "widget"
    assert push.json()["content"] == {"kind": "widget", "widget": {"kind": "OrderWidget"}}
    delivered_to = {row.device_id for row in await Delivery.filter(push_id=answer["id"])}  # type: ignore[attr-defined]
    assert delivered_to == {new_ios, android}
    assert old_ios not in delivered_to
    usage = (await client.get("/v1/usage", headers=bearer(acme.secret_key))).json()
    assert usage["test"]["pushes"]["used"] == 2
    # The app's widget reads what changed with its publishable key.
    app = await publishable(acme)
    read = await client.get("/v1/state/widget:OrderWidget", headers=app)
    assert read.status_code == 200, read.text
    assert read.json()["value"] == {"eta_minutes": 12}
    listed = await client.get("/v1/state", params={"prefix": "widget:"}, headers=app)
    assert [entry["key"] for entry in listed.json()["data"]] == ["widget:OrderWidget"]

    # Without data the entry stays as it was; the push still goes.
    again = await reload(client, acme, "OrderWidget", {"to": {"device_ids": [new_ios]}})
    assert again.status_code == 202, again.text
    assert (again.json()["state"], again.json()["recipients"]) == (None, 1)
    entry = await StateEntry.get(key="widget:OrderWidget")
    assert (entry.version, entry.value) == (1, '{"eta_minutes":12}')


async def test_the_widget_entry_is_brik_s_to_write(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    await reload(client, acme, "Score", {"to": {"tags": ["fans"]}, "data": {"home": 1}})
    server = bearer(acme.secret_key)
    app = await publishable(acme)
    # Even a project that opened every key to apps keeps widget entries its server's.
    acme.project.state_public_write_prefixes = ["w", "widget:"]
    await acme.project.save(update_fields=["state_public_write_prefixes"])

    for headers in (server, app):
        written = await client.put("/v1/state/widget:Score", json={"value": 9}, headers=headers)
        assert written.status_code == 400, written.text
        error = written.json()["error"]
        assert (error["code"], error["param"]) == ("reserved_key", "key")
        assert "POST /v1/widgets/{kind}/reload" in error["message"]
        deleted = await client.delete("/v1/state/widget:Score", headers=headers)
        assert deleted.status_code == 400
    assert (await StateEntry.get(key="widget:Score")).value == '{"home":1}'


async def test_publishable_keys_cannot_reload(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, "01" * 32, **IOS_26)
    response = await client.post(
        "/v1/widgets/OrderWidget/reload", json={"to": {"tags": ["fans"]}, "data": {"x": 1}},
        headers=await publishable(acme),
    )  # fmt: skip
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert await Push.all().count() == 0
    assert await StateEntry.all().count() == 0


@pytest.mark.parametrize(
    ("kind", "body", "status", "code", "param"),
    [
        (".hidden", {"to": {"tags": ["fans"]}}, 400, "parameter_invalid", "kind"),
        ("w" * 129, {"to": {"tags": ["fans"]}}, 400, "parameter_invalid", "kind"),
        ("a%20b", {"to": {"tags": ["fans"]}}, 400, "parameter_invalid", "kind"),
        ("OrderWidget", {"to": {}}, 400, "parameter_invalid", "to"),
        ("OrderWidget", {"to": {"tags": ["fans"]}, "data": [1, 2]}, 400, "parameter_invalid",
         "data"),
        ("OrderWidget", {"to": {"tags": ["fans"]}, "data": {"x": "y" * 65_536}}, 413,
         "value_too_large", "data"),
        ("OrderWidget", {"to": {"tags": ["fans"]}, "alert": {"title": "x"}}, 400,
         "parameter_invalid", "alert"),
    ],
)  # fmt: skip
async def test_bad_reloads_are_refused_whole(
    client: httpx.AsyncClient, database: None, kind: str, body: dict[str, Any], status: int,
    code: str, param: str,
) -> None:  # fmt: skip
    acme = await make_tenant("Acme")
    await register(client, acme, "01" * 32, **IOS_26)

    response = await reload(client, acme, kind, body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert await Push.all().count() == 0
    assert await StateEntry.all().count() == 0


async def test_data_over_the_state_quota_sends_nothing(
    client: httpx.AsyncClient, database: None, settings: Any
) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, "01" * 32, **IOS_26)
    big = {"blob": "x" * 60_000}
    limit = settings.plan_free_state_bytes
    # Fill the plan's state storage to within a few bytes of its limit.
    await StateUsage.create(organization=acme.organization, mode=KeyMode.TEST, bytes=limit - 10)

    response = await reload(client, acme, "OrderWidget", {"to": {"tags": ["fans"]}, "data": big})

    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "state_quota_exceeded"
    assert await Push.all().count() == 0  # the push went with the data it needed
    assert await StateEntry.all().count() == 0
    usage = (await client.get("/v1/usage", headers=bearer(acme.secret_key))).json()
    assert usage["test"]["pushes"]["used"] == 0


async def test_a_retried_reload_is_answered_once(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    await register(client, acme, "01" * 32, **IOS_26)
    body = {"to": {"tags": ["fans"]}, "data": {"eta_minutes": 3}}
    first = await reload(client, acme, "OrderWidget", body, **{"Idempotency-Key": "eta-3"})
    replay = await reload(client, acme, "OrderWidget", body, **{"Idempotency-Key": "eta-3"})
    assert (first.status_code, replay.status_code) == (202, 202)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert await Push.all().count() == 1
    assert (await StateEntry.get(key="widget:OrderWidget")).version == 1
    other = await reload(client, acme, "Other", body, **{"Idempotency-Key": "eta-3"})
    assert other.status_code == 422  # the same key for another widget is another request


async def test_the_openapi_document_describes_the_route(client: httpx.AsyncClient) -> None:
    document = (await client.get("/v1/openapi.json")).json()
    operation = document["paths"]["/v1/widgets/{kind}/reload"]["post"]
    assert "202" in operation["responses"]
    assert {"409", "422", "403"} <= set(operation["responses"])  # idempotent, secret key
    [kind] = operation["parameters"]
    assert kind["schema"]["pattern"] == r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"
    state_key = document["paths"]["/v1/state/{key}"]
    [read] = state_key["get"]["parameters"]
    [write] = state_key["put"]["parameters"]
    assert "not" not in read["schema"]  # activity and widget state are read like entries
    assert write["schema"]["not"] == {"pattern": "^(activity:|widget:)"}  # but never written
