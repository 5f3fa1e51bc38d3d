"""The field types several operations share: date-times in a range every computation survives,
and refusals that name the parameter like any other."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from controlplane.models import ApiKey, PersonalAccessToken, Push
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

# Both are valid RFC 3339, and both fall outside what a datetime can hold once in UTC.
PAST = "2001-01-01T00:00:00Z"
EDGES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00"]


def refused(response: httpx.Response, param: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_invalid", param), error
    message: str = error["message"]
    assert message.startswith(f"{param}: ")
    return message


@pytest.mark.parametrize("moment", EDGES)
async def test_a_push_scheduled_beyond_the_calendar_is_a_400(
    client: httpx.AsyncClient, database: None, moment: str
) -> None:
    acme = await make_tenant("Acme")
    key = {"Authorization": f"Bearer {acme.secret_key}"}
    body: dict[str, Any] = {"kind": "alert", "alert": {"title": "Hi"}, "to": {"tags": ["t"]}}
    message = refused(await client.post("/v1/pushes", json={**body, "send_at": moment},
                                        headers=key), "send_at")  # fmt: skip
    assert "1970 to 2999" in message
    activity = {"event": "end", "content_state": {}, "dismissal_date": moment}
    live = {"kind": "liveactivity", "to": {"tags": ["t"]}, "live_activity": activity}
    refused(await client.post("/v1/pushes", json=live, headers=key),
            "live_activity.dismissal_date")  # fmt: skip
    assert await Push.all().count() == 0


@pytest.mark.parametrize("moment", EDGES)
async def test_expiries_and_filters_beyond_the_calendar_are_a_400(
    client: httpx.AsyncClient, database: None, moment: str
) -> None:
    acme = await make_tenant("Acme")
    owner = acme.owner.headers
    key = {"name": "far", "kind": "secret", "mode": "test", "expires_at": moment}
    refused(await client.post(f"/v1/projects/{acme.project.id}/api_keys", json=key,
                              headers=owner), "expires_at")  # fmt: skip
    refused(await client.post("/v1/user/access_tokens", json={"name": "far", "expires_at": moment},
                              headers=owner), "expires_at")  # fmt: skip
    audit = f"/v1/organizations/{acme.organization.id}/audit_events"
    refused(await client.get(audit, params={"created_gte": moment}, headers=owner), "created_gte")
    assert await ApiKey.filter(name="far").count() == 0
    assert await PersonalAccessToken.filter(name="far").count() == 0


async def test_a_past_expiry_names_expires_at(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    response = await client.post(
        f"/v1/projects/{acme.project.id}/api_keys",
        json={"name": "old", "kind": "secret", "mode": "test", "expires_at": PAST},
        headers=acme.owner.headers,
    )
    assert refused(response, "expires_at") == "expires_at: must be in the future"


async def test_date_times_within_the_range_still_work(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    far = await client.post(
        f"/v1/projects/{acme.project.id}/api_keys",
        json={"name": "far", "kind": "secret", "mode": "test",
              "expires_at": "2999-12-31t23:59:59.123456789+14:00"},
        headers=acme.owner.headers,
    )  # fmt: skip
    assert far.status_code == 201, far.text
    activity = {"event": "end", "content_state": {}, "stale_date": "1973-06-09t22:36:20z",
                "dismissal_date": "2999-01-01T00:00:00-12:00"}  # fmt: skip
    live = {"kind": "liveactivity", "to": {"tags": ["t"]}, "live_activity": activity}
    sent = await client.post("/v1/pushes", json=live,
                             headers={"Authorization": f"Bearer {acme.secret_key}"})  # fmt: skip
    assert sent.status_code == 202, sent.text
    listed = await client.get(
        f"/v1/organizations/{acme.organization.id}/audit_events",
        params={"created_gte": "1970-01-01T00:00:00-05:00"},
        headers=acme.owner.headers,
    )
    assert listed.status_code == 200, listed.text


async def test_addresses_and_names_are_trimmed_but_must_say_something(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    invitations = f"/v1/organizations/{acme.organization.id}/invitations"
    sent = await client.post(invitations, json={"email": " New.Hire@Example.com\n"},
                             headers=acme.owner.headers)  # fmt: skip
    assert sent.status_code == 201, sent.text
    assert sent.json()["email"] == "new.hire@example.com"
    for address in ["new hire@example.com", "new.hire@example", "@example.com"]:
        refused(await client.post(invitations, json={"email": address},
                                  headers=acme.owner.headers), "email")  # fmt: skip
    projects = f"/v1/organizations/{acme.organization.id}/projects"
    refused(await client.post(projects, json={"name": " \t "}, headers=acme.owner.headers),
            "name")  # fmt: skip
    named = await client.post(projects, json={"name": "  Shop  "}, headers=acme.owner.headers)
    assert named.json()["name"] == "Shop"
