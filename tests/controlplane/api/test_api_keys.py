"""Project API keys through the management API, and using them on the tenant API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from controlplane.app import create_app
from controlplane.auth.api_key_cache import EPOCH_KEY
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.keys import looks_like_key
from controlplane.models import ApiKey, AuditEvent, KeyKind, KeyMode, Project, Role
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.processes import free_port, running_command, server_environment
from tests.support.redis_server import RestartableRedis
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def serve_process(env: dict[str, str]) -> Iterator[str]:
    """A `brik-cloud serve` process on ``env``; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running_command("serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                         ready_url=f"{url}/healthz"):  # fmt: skip
        yield url


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


async def test_a_repeated_revocation_tells_every_process_again(
    client: httpx.AsyncClient, redis_url: str, database: None
) -> None:
    # How a revocation answered 503 after its commit (Redis went away just then) is finished.
    acme = await make_tenant("Acme")
    key = await ApiKey.get(project=acme.project)
    path = f"/v1/projects/{acme.project.id}/api_keys/{key.id}"
    redis = Redis.from_url(redis_url)
    try:
        assert (await client.delete(path, headers=acme.owner.headers)).status_code == 200
        epoch = await redis.get(EPOCH_KEY)
        again = await client.delete(path, headers=acme.owner.headers)
        assert again.status_code == 200
        assert again.json()["revoked_at"] is not None
        assert await redis.get(EPOCH_KEY) not in (None, epoch)
    finally:
        await redis.aclose()


async def test_key_changes_redis_cannot_hear_of_are_refused_and_nothing_is_written(
    make_settings: Callable[..., Settings], database: None
) -> None:
    acme = await make_tenant("Acme")
    key = await ApiKey.get(project=acme.project)
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    owner = acme.owner.headers
    path = f"/v1/projects/{acme.project.id}/api_keys/{key.id}"
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        answers = [
            await client.delete(path, headers=owner),
            await client.patch(path, json={"scopes": ["devices:read"]}, headers=owner),
            await client.delete(f"/v1/projects/{acme.project.id}", headers=owner),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "dependency_unavailable"
            assert answer.json()["error"]["param"] == "redis"
            assert "nothing was changed" in answer.json()["error"]["message"]
        # A rename revokes nothing: it needs no Redis.
        renamed = await client.patch(path, json={"name": "renamed"}, headers=owner)
        assert renamed.status_code == 200
    await key.refresh_from_db()
    assert key.revoked_at is None
    assert key.scopes != ["devices:read"]
    assert key.name == "renamed"
    assert await Project.exists(id=acme.project.id)


@pytest.mark.faults
async def test_no_api_process_accepts_a_revoked_key_across_a_redis_outage(
    database_url: str, database: None, tmp_path: Path
) -> None:
    # Two `serve` processes and a Redis of the test's own, killed and restarted from its dump.
    acme = await make_tenant("Acme")
    _, second_key = await issue_api_key(acme.project, name="second", kind=KeyKind.SECRET,
                                        mode=KeyMode.TEST, pepper=TEST_SECRET_KEY)  # fmt: skip
    first_id, second_id = [
        key.id for key in sorted(await ApiKey.filter(project=acme.project), key=lambda k: k.name)
    ][::-1]  # "test secret", then "second"
    keys = f"/v1/projects/{acme.project.id}/api_keys"
    owner = acme.owner.headers
    async with contextlib.AsyncExitStack() as stack:
        redis_server = stack.enter_context(RestartableRedis(tmp_path / "redis"))
        env = server_environment(database_url, redis_server.url, "brik-test:outage")
        a, b = (stack.enter_context(serve_process(env)) for _ in range(2))
        http = await stack.enter_async_context(httpx.AsyncClient())

        async def accepted(process: str, key: str) -> bool:
            answer = await http.get(f"{process}/v1/api_key", headers=bearer(key))
            assert answer.status_code in (200, 401), answer.text
            return answer.status_code == 200

        for process in (a, b):  # both processes have both keys cached
            assert await accepted(process, acme.secret_key)
            assert await accepted(process, second_key)

        # 1. Revoking while Redis is down: refused, and nothing written (it used to commit,
        #    answer 500, and leave b accepting the key for good).
        redis_server.save()
        redis_server.kill()
        refused = await http.delete(f"{a}{keys}/{first_id}", headers=owner)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["param"] == "redis"
        redis_server.start()  # from its dump
        shown = (await http.get(f"{a}{keys}/{first_id}", headers=owner)).json()
        assert shown["revoked_at"] is None
        assert await accepted(b, acme.secret_key)  # still valid: it was never revoked
        # Repeated once Redis is back: answered, and refused everywhere at once.
        assert (await http.delete(f"{a}{keys}/{first_id}", headers=owner)).status_code == 200
        assert not await accepted(b, acme.secret_key)

        # 2. A revocation Redis heard of, then lost: it restarts from a dump taken before,
        #    holding the very epoch b remembers. b made no request in between, so it saw no
        #    outage; it must still not trust what it cached.
        assert await accepted(b, second_key)
        redis_server.save()
        assert (await http.delete(f"{a}{keys}/{second_id}", headers=owner)).status_code == 200
        redis_server.restart()
        assert not await accepted(b, second_key)
        assert not await accepted(a, second_key)
