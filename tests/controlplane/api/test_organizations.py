"""Organizations, projects and members through the management API, role by role."""

from __future__ import annotations

import httpx
import pytest

from controlplane.models import ApiKey, AuditEvent, Membership, Organization, Project, Role
from tests.support.tenants import make_person, make_tenant

pytestmark = pytest.mark.database


async def test_creating_an_organization_makes_you_its_owner_and_is_audited(
    client: httpx.AsyncClient, database: None
) -> None:
    ada = await make_person("ada@example.com")
    created = await client.post("/v1/organizations", json={"name": " Acme "}, headers=ada.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["object"], body["name"], body["role"], body["plan"]) == (
        "organization",
        "Acme",
        "owner",
        "free",
    )
    listed = (await client.get("/v1/organizations", headers=ada.headers)).json()
    assert [org["id"] for org in listed["data"]] == [body["id"]]
    actions = await AuditEvent.filter(organization_id=body["id"]).values_list("action", flat=True)
    assert sorted(actions) == ["member.added", "organization.created"]


@pytest.mark.parametrize(
    "payload",
    [{}, {"name": ""}, {"name": "x" * 201}, {"name": 3}, {"name": "ok", "plan": "enterprise"}],
)
async def test_bad_organization_bodies_are_400_and_write_nothing(
    client: httpx.AsyncClient, database: None, payload: dict[str, object]
) -> None:
    ada = await make_person("ada@example.com")
    response = await client.post("/v1/organizations", json=payload, headers=ada.headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] in {"name", "plan"}
    assert await Organization.all().count() == 0


async def test_roles_decide_who_may_rename_and_delete(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    path = f"/v1/organizations/{acme.organization.id}"
    for role in (Role.VIEWER, Role.DEVELOPER):
        denied = await client.patch(path, json={"name": "New"}, headers=acme.people[role].headers)
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "insufficient_role"
    renamed = await client.patch(
        path, json={"name": "New"}, headers=acme.people[Role.ADMIN].headers
    )
    assert renamed.json()["name"] == "New"
    assert (await client.delete(path, headers=acme.people[Role.ADMIN].headers)).status_code == 403
    viewer_read = await client.get(path, headers=acme.people[Role.VIEWER].headers)
    assert viewer_read.json()["role"] == "viewer"
    deleted = await client.delete(path, headers=acme.owner.headers)
    assert deleted.json() == {"object": "organization", "id": acme.organization.id, "deleted": True}
    assert not await Project.filter(id=acme.project.id).exists()
    assert await ApiKey.all().count() == 0
    # The audit trail outlives the organization.
    assert await AuditEvent.filter(
        organization_id=acme.organization.id, action="organization.deleted"
    ).exists()
    key = await client.get("/v1/api_key", headers={"Authorization": f"Bearer {acme.secret_key}"})
    assert key.status_code == 401


async def test_projects_crud(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    projects = f"/v1/organizations/{acme.organization.id}/projects"
    dev = acme.people[Role.DEVELOPER].headers
    assert (await client.post(projects, json={"name": "Widgets"}, headers=dev)).status_code == 403
    created = await client.post(projects, json={"name": "Widgets"}, headers=acme.owner.headers)
    assert created.status_code == 201
    project_id = created.json()["id"]
    listed = (await client.get(projects, headers=dev)).json()
    assert {p["name"] for p in listed["data"]} == {"Acme app", "Widgets"}
    path = f"/v1/projects/{project_id}"
    renamed = await client.patch(path, json={"name": "Gadgets"}, headers=acme.owner.headers)
    assert renamed.json()["name"] == "Gadgets"
    assert (await client.get(path, headers=dev)).json()["organization_id"] == acme.organization.id
    assert (await client.delete(path, headers=acme.owner.headers)).json()["deleted"] is True
    assert (await client.get(path, headers=dev)).status_code == 404


async def test_member_role_rules(client: httpx.AsyncClient, database: None) -> None:
    acme = await make_tenant("Acme")
    members = f"/v1/organizations/{acme.organization.id}/members"
    listing = (await client.get(members, headers=acme.people[Role.VIEWER].headers)).json()
    by_role = {member["role"]: member["id"] for member in listing["data"]}
    assert set(by_role) == {"owner", "admin", "developer", "viewer"}
    admin = acme.people[Role.ADMIN].headers

    # An admin manages developers and viewers, but cannot make or touch owners.
    promoted = await client.patch(
        f"{members}/{by_role['viewer']}", json={"role": "developer"}, headers=admin
    )
    assert promoted.json()["role"] == "developer"
    for member, role in ((by_role["developer"], "owner"), (by_role["owner"], "viewer")):
        refused = await client.patch(f"{members}/{member}", json={"role": role}, headers=admin)
        assert refused.status_code == 403
    assert (await client.delete(f"{members}/{by_role['owner']}", headers=admin)).status_code == 403
    bad_role = await client.patch(
        f"{members}/{by_role['viewer']}", json={"role": "god"}, headers=admin
    )
    assert bad_role.status_code == 400
    assert bad_role.json()["error"]["param"] == "role"

    # The last owner can neither leave nor be demoted.
    owner = acme.owner.headers
    last = await client.patch(
        f"{members}/{by_role['owner']}", json={"role": "admin"}, headers=owner
    )
    assert last.status_code == 400
    assert last.json()["error"]["code"] == "last_owner"
    assert (await client.delete(f"{members}/{by_role['owner']}", headers=owner)).status_code == 400

    # A viewer may leave on their own; a developer may not remove someone else.
    dev = acme.people[Role.DEVELOPER].headers
    assert (await client.delete(f"{members}/{by_role['admin']}", headers=dev)).status_code == 403
    left = await client.delete(f"{members}/{by_role['developer']}", headers=dev)
    assert left.status_code == 200
    assert not await Membership.filter(id=by_role["developer"]).exists()
    changes = await AuditEvent.filter(action__in=["member.role_changed", "member.removed"]).count()
    assert changes == 2


async def test_nul_characters_and_malformed_ids_are_refused_before_the_database(
    client: httpx.AsyncClient, database: None
) -> None:
    ada = await make_person("ada@example.com")
    nul = await client.post("/v1/organizations", json={"name": "a\u0000b"}, headers=ada.headers)
    assert nul.status_code == 400
    assert nul.json()["error"]["param"] == "name"
    key = await client.post("/v1/organizations", json={"na\u0000me": "x"}, headers=ada.headers)
    assert key.status_code == 400
    for path in ("/v1/organizations/org%00", "/v1/projects/" + "p" * 5000, "/v1/projects/ö"):
        response = await client.get(path, headers=ada.headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "resource_missing"
    query = await client.get(
        "/v1/organizations", params={"starting_after": "org\x00"}, headers=ada.headers
    )
    assert query.status_code == 400
    assert await Organization.all().count() == 0
