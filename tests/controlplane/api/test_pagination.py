"""Cursor pagination, Stripe style: limit, starting_after, has_more."""

from __future__ import annotations

import httpx
import pytest

from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_pages_walk_every_object_once_newest_first(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    projects = f"/v1/organizations/{acme.organization.id}/projects"
    for number in range(11):
        await client.post(projects, json={"name": f"p{number}"}, headers=acme.owner.headers)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "4", **({"starting_after": cursor} if cursor else {})}
        page = (await client.get(projects, params=params, headers=acme.owner.headers)).json()
        pages += 1
        assert page["object"] == "list"
        seen += [project["name"] for project in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["data"][-1]["id"]
    assert pages == 3
    assert seen == [f"p{n}" for n in reversed(range(11))] + ["Acme app"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"starting_after": "prj_doesnotexist"}, "starting_after"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_list_parameters_are_400(
    client: httpx.AsyncClient, database: None, params: dict[str, str], param: str
) -> None:
    acme = await make_tenant("Acme")
    response = await client.get(
        f"/v1/organizations/{acme.organization.id}/projects",
        params=params,
        headers=acme.owner.headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_a_cursor_from_another_tenant_is_refused(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    other = await make_tenant("Other")
    response = await client.get(
        f"/v1/organizations/{acme.organization.id}/projects",
        params={"starting_after": other.project.id},
        headers=acme.owner.headers,
    )
    assert response.status_code == 400
    assert other.project.name not in response.text
