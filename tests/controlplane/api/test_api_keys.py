"""Project API keys through the management API, and using them on the tenant API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.app import create_app
from controlplane.auth.keys import looks_like_key
from controlplane.models import ApiKey, AuditEvent, Role
from controlplane.settings import Settings
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_is_shown_once_and_works_at_once(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    keys = f"/v1/projects/{acme.project.id}/api_keys"
    created = await client.post(
        keys,
        json={"name": "server", "kind": "secret", "mode": "live", "scopes": ["pushes:write"]},
        headers=acme.people[Role.DEVELOPER].headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("bk_sk_live_")
    assert looks_like_key(secret)
    assert body["redacted"].endswith(secret[-4:])
    assert body["redacted"].startswith(secret[:15])
    assert body["scopes"] == ["pushes:write"]
    again = await client.get(f"{keys}/{body['id']}", headers=acme.owner.headers)
    assert "secret" not in again.json()
    assert secret not in again.text
    listed = await client.get(keys, headers=acme.owner.headers)
    assert secret not in listed.text
    me = await client.get("/v1/api_key", headers=bearer(secret))
    assert me.status_code == 200
    assert (me.json()["project_id"], me.json()["mode"]) == (acme.project.id, "live")
    assert await AuditEvent.filter(action="api_key.created", target_id=body["id"]).exists()


async def test_viewers_cannot_see_keys(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    keys = f"/v1/projects/{acme.project.id}/api_keys"
    assert (await client.get(keys, headers=acme.people[Role.VIEWER].headers)).status_code == 403


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (
            {"name": "x", "kind": "publishable", "mode": "test", "scopes": ["pushes:write"]},
            "scopes",
        ),
        ({"name": "x", "kind": "secret", "mode": "test", "scopes": ["root"]}, "scopes"),
        ({"name": "x", "kind": "admin", "mode": "test"}, "kind"),
        ({"name": "x", "kind": "secret", "mode": "staging"}, "mode"),
        (
            {"name": "x", "kind": "secret", "mode": "test", "expires_at": "2001-01-01T00:00:00Z"},
            "expires_at",
        ),
        (
            {"name": "x", "kind": "secret", "mode": "test", "expires_at": "2999-01-01T00:00:00"},
            "expires_at",
        ),
    ],
)
async def test_keys_cannot_get_scopes_their_kind_does_not_allow(
    client: httpx.AsyncClient, database: None, payload: dict[str, object], param: str | None
) -> None:
    acme = await make_tenant("Acme")
    response = await client.post(
        f"/v1/projects/{acme.project.id}/api_keys", json=payload, headers=acme.owner.headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert await ApiKey.filter(project=acme.project).count() == 1  # only the tenant's own


async def test_missing_unknown_revoked_and_expired_keys_each_say_why(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    keys = f"/v1/projects/{acme.project.id}/api_keys"

    async def code(headers: dict[str, str]) -> str:
        response = await client.get("/v1/api_key", headers=headers)
        assert response.status_code == 401
        return str(response.json()["error"]["code"])

    assert await code({}) == "missing_api_key"
    assert await code(bearer("bk_sk_test_nonsense")) == "invalid_api_key"
    assert await code(acme.owner.headers) == "invalid_api_key"  # a personal token is not a key
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    short = await client.post(
        keys,
        json={"name": "short", "kind": "secret", "mode": "test", "expires_at": soon},
        headers=acme.owner.headers,
    )
    short_key = short.json()["secret"]
    assert (await client.get("/v1/api_key", headers=bearer(short_key))).status_code == 200
    # Now cached; the cached copy carries its expiry, so the key stops when it is due.
    await asyncio.sleep(
        max(0.0, (datetime.fromisoformat(soon) - datetime.now(UTC)).total_seconds()) + 0.05
    )
    assert await code(bearer(short_key)) == "api_key_expired"
    revoked = await client.delete(f"{keys}/{short.json()['id']}", headers=acme.owner.headers)
    assert revoked.json()["revoked_at"] is not None
    assert await code(bearer(short_key)) == "api_key_revoked"
    # The project's first key keeps working: several keys per project rotate independently.
    assert (await client.get("/v1/api_key", headers=bearer(acme.secret_key))).status_code == 200


async def test_revocation_reaches_every_api_process_at_once(
    app: Starlette, client: httpx.AsyncClient, settings: Settings, database: None
) -> None:
    acme = await make_tenant("Acme")
    other_app = create_app(settings)
    async with serving(other_app) as other_url, httpx.AsyncClient(base_url=other_url) as other:
        # Both processes have the key cached.
        for http in (client, other):
            for _ in range(2):
                assert (
                    await http.get("/v1/api_key", headers=bearer(acme.secret_key))
                ).status_code == 200
        assert app.state.api_keys.size == other_app.state.api_keys.size == 1
        key = await ApiKey.get(project=acme.project)
        revoked = await client.delete(
            f"/v1/projects/{acme.project.id}/api_keys/{key.id}", headers=acme.owner.headers
        )
        assert revoked.status_code == 200
        refused = await other.get("/v1/api_key", headers=bearer(acme.secret_key))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "api_key_revoked"


async def test_scope_changes_apply_at_once_and_last_use_is_recorded_without_db_writes(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    key = await ApiKey.get(project=acme.project)
    path = f"/v1/projects/{acme.project.id}/api_keys/{key.id}"
    assert (await client.get(path, headers=acme.owner.headers)).json()["last_used_at"] is None
    await client.get("/v1/api_key", headers=bearer(acme.secret_key))
    await key.refresh_from_db()
    assert key.last_used_at is None  # nothing written to the database per request …
    shown = (await client.get(path, headers=acme.owner.headers)).json()
    assert shown["last_used_at"] is not None  # … yet the API shows the use
    narrowed = await client.patch(
        path, json={"scopes": ["devices:read"]}, headers=acme.owner.headers
    )
    assert narrowed.json()["scopes"] == ["devices:read"]
    me = await client.get("/v1/api_key", headers=bearer(acme.secret_key))
    assert me.json()["scopes"] == ["devices:read"]
