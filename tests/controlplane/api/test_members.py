"""Members: concurrent role changes never leave an organization without an owner."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from controlplane.models import Membership, Role
from tests.support.tenants import make_person, make_tenant

pytestmark = pytest.mark.database

ROUNDS = 10


async def act(
    client: httpx.AsyncClient, change: str, member: str, headers: dict[str, str]
) -> httpx.Response:
    if change == "demote":
        return await client.patch(member, json={"role": "viewer"}, headers=headers)
    return await client.delete(member, headers=headers)


@pytest.mark.parametrize("change", ["demote", "remove"])
async def test_two_owners_changing_each_other_at_once_leave_one_owner(
    client: httpx.AsyncClient, database: None, change: str
) -> None:
    for round_ in range(ROUNDS):
        acme = await make_tenant(f"Acme {change} {round_}", roles=(Role.OWNER,))
        other = await make_person(f"other-{change}-{round_}@acme.example")
        theirs = await Membership.create(
            organization=acme.organization, user=other.user, role=Role.OWNER
        )
        mine = await Membership.get(organization=acme.organization, user=acme.owner.user)
        members = f"/v1/organizations/{acme.organization.id}/members"
        answers = await asyncio.gather(
            act(client, change, f"{members}/{theirs.id}", acme.owner.headers),
            act(client, change, f"{members}/{mine.id}", other.headers),
        )
        statuses = sorted(answer.status_code for answer in answers)
        owners = await Membership.filter(organization=acme.organization, role=Role.OWNER).count()
        assert owners == 1, (round_, statuses)
        # The second is decided on what the first left: its sender is a viewer now (403), or
        # no longer a member at all (404).
        assert statuses == [200, 403 if change == "demote" else 404], [a.text for a in answers]
