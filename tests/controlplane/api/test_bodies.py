"""Request bodies: whatever the bytes, the answer is a 4xx with the standard error body that
names what is wrong — never a 500, and never a value quietly changed on its way to a phone."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from controlplane.models import Push
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

MAX_DEPTH = 64  # documented: docs and the invalid_json message
BACKGROUND = '{"kind": "background", "to": {"tags": ["beta"]}, "data": {"x": %s}}'


async def post_push(client: httpx.AsyncClient, tenant: Tenant, body: str) -> httpx.Response:
    return await client.post(
        "/v1/pushes",
        content=body.encode(),
        headers={
            "Authorization": f"Bearer {tenant.secret_key}",
            "content-type": "application/json",
        },
    )


def refused(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize("where", ["body", "data"])
async def test_json_nested_thousands_deep_is_a_400(
    client: httpx.AsyncClient, database: None, where: str
) -> None:
    acme = await make_tenant("Acme")
    deep = "[" * 5000 + "]" * 5000
    body = deep if where == "body" else BACKGROUND % deep
    error = refused(await post_push(client, acme, body), "invalid_json")
    assert f"{MAX_DEPTH} levels" in error["message"]
    # Unclosed, as a stream cut short would be: refused the same way, not parsed into the deep.
    refused(await post_push(client, acme, BACKGROUND % ("{" * 5000)), "invalid_json")
    assert await Push.all().count() == 0


async def test_nesting_within_the_limit_and_brackets_inside_strings_are_fine(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    # The body is an object holding data holding x: three levels before the value itself.
    nested = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)
    assert (await post_push(client, acme, BACKGROUND % nested)).status_code == 202
    # Brackets inside strings (escaped quotes included) are text, not nesting.
    text = json.dumps('\\" ' + "[{" * 1000)
    assert (await post_push(client, acme, BACKGROUND % text)).status_code == 202


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000])
async def test_numbers_json_cannot_carry_are_refused_not_sent_as_null(
    client: httpx.AsyncClient, database: None, number: str
) -> None:
    acme = await make_tenant("Acme")
    refused(await post_push(client, acme, BACKGROUND % number), "invalid_json")
    refused(await post_push(client, acme, BACKGROUND % f'[1, {{"y": {number}}}]'), "invalid_json")
    live = (
        '{"kind": "liveactivity", "to": {"tags": ["beta"]}, "live_activity": {"event": "update",'
        f' "content_state": {{"eta": 5}}, "relevance_score": {number}}}}}'
    )
    refused(await post_push(client, acme, live), "invalid_json")
    assert await Push.all().count() == 0


async def test_large_but_finite_numbers_still_pass(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    numbers = "[1e308, -2.5e-300, 12345678901234567890]"
    response = await post_push(client, acme, BACKGROUND % numbers)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (BACKGROUND % '"\\ud800 alone"', "data.x"),
        ('{"kind": "background", "to": {"user_ids": ["\\udfff"]}}', "to.user_ids.0"),
        ('{"kind": "background", "to": {"tags": ["t"]}, "data": {"\\ud800": 1}}', "data"),
        (BACKGROUND % '"\\u0000"', "data.x"),
    ],
)
async def test_text_no_column_can_store_is_a_400_naming_it(
    client: httpx.AsyncClient, database: None, body: str, param: str
) -> None:
    acme = await make_tenant("Acme")
    error = refused(await post_push(client, acme, body), "parameter_invalid")
    assert error["param"] == param
    assert await Push.all().count() == 0
    # A pair of surrogates is one character, and fine.
    assert (await post_push(client, acme, BACKGROUND % '"\\ud83d\\ude80"')).status_code == 202


@pytest.mark.parametrize(
    ("path", "body", "param", "message"),
    [
        ("/v1/devices", {"token": "abc", "platform": "ios"}, "token",
         "token: iOS device tokens are 64 to 200 hexadecimal characters"),
        ("/v1/devices", {"token": "x", "platform": "android"}, "token",
         "token: not an FCM registration token"),
        ("/v1/devices", {"token": "fcm:" + "x" * 30, "platform": "android",
                         "live_activity_token": "ab" * 32}, "live_activity_token",
         "live_activity_token: Live Activities are iOS only"),
        ("/v1/pushes", {"kind": "alert", "to": {}}, "to",
         "to: name at least one of device_ids, user_ids or tags"),
        ("/v1/pushes", {"kind": "alert", "to": {"tags": ["t"]}}, "alert",
         "alert: kind 'alert' needs alert"),
        ("/v1/pushes", {"kind": "alert", "alert": {"badge": 1}, "to": {"tags": ["t"]}},
         "alert.title",
         "alert.title: an alert needs a title or a body (or title_loc_key or body_loc_key)"),
        ("/v1/pushes", {"kind": "background", "data": {"aps": 1}, "to": {"tags": ["t"]}},
         "data.aps", "data.aps: APNs reserves this key"),
        ("/v1/pushes", {"kind": "liveactivity", "to": {"tags": ["t"]},
                        "live_activity": {"event": "start", "content_state": {}}},
         "live_activity.attributes_type",
         "live_activity.attributes_type: a start event needs attributes_type and attributes"),
    ],
)  # fmt: skip
async def test_every_refused_body_names_its_parameter(
    client: httpx.AsyncClient,
    database: None,
    path: str,
    body: dict[str, Any],
    param: str,
    message: str,
) -> None:
    acme = await make_tenant("Acme")
    response = await client.post(
        path, json=body, headers={"Authorization": f"Bearer {acme.secret_key}"}
    )
    error = refused(response, "parameter_invalid")
    assert (error["param"], error["message"]) == (param, message)


async def test_a_field_validator_reads_like_the_others(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    response = await client.post(
        f"/v1/organizations/{acme.organization.id}/invitations",
        json={"email": "not an address", "role": "developer"},
        headers=acme.owner.headers,
    )
    error = refused(response, "parameter_invalid")
    assert error["param"] == "email"
    assert error["message"].startswith("email: ")
    assert "Value error" not in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("ttl", "true"), ("ttl", '"60"'), ("ttl", "60.5"), ("priority", "1"),
     ("send_at", "1900000000"), ("collapse_id", "42")],
)  # fmt: skip
async def test_a_value_of_another_type_is_refused_not_converted(
    client: httpx.AsyncClient, database: None, field: str, value: str
) -> None:
    acme = await make_tenant("Acme")
    body = f'{{"kind": "background", "to": {{"tags": ["t"]}}, "{field}": {value}}}'
    error = refused(await post_push(client, acme, body), "parameter_invalid")
    assert error["param"] == field
    # A whole number written with a point is still a whole number.
    whole = '{"kind": "background", "to": {"tags": ["t"]}, "ttl": 60.0}'
    assert (await post_push(client, acme, whole)).status_code == 202
