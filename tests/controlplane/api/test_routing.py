"""The operation pipeline every /v1 route shares: scopes, bodies, transactions, after-commit
and after-rollback work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette

from controlplane.api.routing import Auth, Call, Operation, build_routes
from controlplane.auth.api_keys import issue_api_key
from controlplane.models import KeyKind, KeyMode, Project
from tests.conftest import TEST_SECRET_KEY
from tests.support.databases import commits_failing
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class Renamed(BaseModel):
    object: Literal["renamed"] = "renamed"
    name: str


async def rename_then_fail(call: Call) -> Renamed:
    """Writes, then breaks: the write must not survive."""
    project = call.tenant.project
    assert project is not None
    project.name = call.body_as(Rename).name
    await project.save(update_fields=["name"])
    raise RuntimeError("a bug after a write")


async def push_something(call: Call) -> Renamed:
    return Renamed(name=call.key.project_id)


async def with_after_commit(call: Call) -> Renamed:
    call.after_commit.append(lambda: _note_commit(call))
    return Renamed(name="done")


async def rename_then_follow_up_fails(call: Call) -> Renamed:
    """Commits a rename; its first follow-up breaks, the second must still run."""
    project = call.tenant.project
    assert project is not None
    project.name = call.body_as(Rename).name
    await project.save(update_fields=["name"])

    async def broken() -> None:
        raise RuntimeError("the mail server hung up")

    call.after_commit.extend([broken, lambda: _note_commit(call)])
    return Renamed(name=project.name)


async def rename_undoably(call: Call) -> Renamed:
    """Renames, with work for once it commits and work undoing something done outside the
    database (an APNs channel opened) if it does not; breaks after the write if asked to."""
    call.after_commit.append(lambda: _note_commit(call))
    call.after_rollback.append(lambda: _note_rollback(call))
    project = call.tenant.project
    assert project is not None
    project.name = call.body_as(Rename).name
    await project.save(update_fields=["name"])
    if project.name == BROKEN:
        raise RuntimeError("a bug after a write")
    return Renamed(name=project.name)


COMMITS: list[str] = []
ROLLBACKS: list[str] = []
BROKEN = "Broken"


async def _note_commit(call: Call) -> None:
    COMMITS.append(call.request.url.path)


async def _note_rollback(call: Call) -> None:
    ROLLBACKS.append(call.request.url.path)


TEST_OPERATIONS = [
    Operation("POST", "/v1/projects/{project_id}/rename-then-fail", rename_then_fail,
              "test", "Test", body=Rename, response=Renamed),
    Operation("POST", "/v1/test/pushes", push_something, "test", "Test",
              auth=Auth.API_KEY, scope="pushes:write", response=Renamed),
    Operation("POST", "/v1/test/after-commit", with_after_commit, "test", "Test",
              auth=Auth.API_KEY, response=Renamed),
    Operation("POST", "/v1/projects/{project_id}/rename-then-follow-up-fails",
              rename_then_follow_up_fails, "test", "Test", body=Rename, response=Renamed),
    Operation("POST", "/v1/projects/{project_id}/rename-undoably", rename_undoably,
              "test", "Test", body=Rename, response=Renamed),
]  # fmt: skip


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    app.router.routes.extend(build_routes(TEST_OPERATIONS))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_a_missing_scope_is_403_naming_it(http: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    _, publishable = await issue_api_key(
        acme.project,
        name="app",
        kind=KeyKind.PUBLISHABLE,
        mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY,
    )
    denied = await http.post("/v1/test/pushes", headers={"Authorization": f"Bearer {publishable}"})
    assert denied.status_code == 403
    assert denied.json()["error"] == {
        "type": "permission_error",
        "code": "missing_scope",
        "message": "This API key lacks the 'pushes:write' scope.",
        "param": "pushes:write",
    }
    allowed = await http.post(
        "/v1/test/pushes", headers={"Authorization": f"Bearer {acme.secret_key}"}
    )
    assert allowed.json()["name"] == acme.project.id


async def test_a_failing_handler_writes_nothing(http: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    response = await http.post(
        f"/v1/projects/{acme.project.id}/rename-then-fail",
        json={"name": "Half done"},
        headers=acme.owner.headers,
    )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "api_error"
    assert (await Project.get(id=acme.project.id)).name == "Acme app"


async def test_after_commit_work_runs_and_bodies_are_refused_where_none_is_taken(
    http: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    key = {"Authorization": f"Bearer {acme.secret_key}"}
    COMMITS.clear()
    assert (await http.post("/v1/test/after-commit", headers=key)).status_code == 200
    assert COMMITS == ["/v1/test/after-commit"]
    stray = await http.post("/v1/test/after-commit", json={"x": 1}, headers=key)
    assert stray.status_code == 400
    assert stray.json()["error"]["code"] == "unexpected_body"
    assert COMMITS == ["/v1/test/after-commit"]


async def test_a_failing_follow_up_never_turns_a_committed_change_into_a_500(
    http: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    COMMITS.clear()
    path = f"/v1/projects/{acme.project.id}/rename-then-follow-up-fails"
    answer = await http.post(path, json={"name": "Renamed"}, headers=acme.owner.headers)
    assert answer.status_code == 200, answer.text
    assert (await Project.get(id=acme.project.id)).name == "Renamed"
    assert [path] == COMMITS  # the follow-up after the broken one ran too


async def test_work_undoing_a_change_runs_when_its_handler_fails_and_never_once_committed(
    http: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    path = f"/v1/projects/{acme.project.id}/rename-undoably"
    COMMITS.clear()
    ROLLBACKS.clear()
    broken = await http.post(path, json={"name": BROKEN}, headers=acme.owner.headers)
    assert broken.status_code == 500
    assert [path] == ROLLBACKS
    assert COMMITS == []
    assert (await Project.get(id=acme.project.id)).name == "Acme app"
    ROLLBACKS.clear()
    renamed = await http.post(path, json={"name": "Renamed"}, headers=acme.owner.headers)
    assert renamed.status_code == 200, renamed.text
    assert ROLLBACKS == []
    assert [path] == COMMITS


@pytest.mark.postgres_only  # the commit is made to fail by a deferred trigger
async def test_work_undoing_a_change_runs_when_the_commit_fails_after_the_handler_returned(
    http: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    path = f"/v1/projects/{acme.project.id}/rename-undoably"
    COMMITS.clear()
    ROLLBACKS.clear()
    async with commits_failing("projects", "name", "Never committed"):
        failed = await http.post(path, json={"name": "Never committed"}, headers=acme.owner.headers)
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "api_error"
    assert [path] == ROLLBACKS  # the handler had returned: what it did is undone
    assert COMMITS == []
    assert (await Project.get(id=acme.project.id)).name == "Acme app"


async def test_head_is_answered_like_get(http: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    head = await http.head("/v1/user", headers=acme.owner.headers)
    assert head.status_code == 200
    assert head.content == b""


def test_a_route_with_an_unscoped_path_id_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="PATH_OBJECTS"):
        build_routes([Operation("GET", "/v1/widgets/{widget_id}", push_something, "t", "T")])


@pytest.mark.parametrize(
    ("query", "param"),
    [("limit=10&limit=20", "limit"), ("platform=ios&platform=android", "platform"),
     ("limit=5&status=active&status=active", "status")],
)  # fmt: skip
async def test_a_repeated_query_parameter_is_refused_naming_it(
    client: httpx.AsyncClient, database: None, query: str, param: str
) -> None:
    """Silently using one of two values would answer a question nobody asked."""
    acme = await make_tenant("Acme")
    response = await client.get(
        f"/v1/devices?{query}", headers={"Authorization": f"Bearer {acme.secret_key}"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("parameter_invalid", param)
    assert error["message"].startswith(f"{param}:")
