"""The audit log: owners and admins read it with filters; nobody can change it."""

from __future__ import annotations

import httpx
import pytest

from controlplane.models import AppendOnly, AuditEvent, Membership, Role
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_sensitive_actions_are_recorded_with_actor_target_ip_and_agent(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    headers = {**acme.owner.headers, "User-Agent": "audit-test/1.0"}
    created = await client.post(
        f"/v1/projects/{acme.project.id}/api_keys",
        json={"name": "ci", "kind": "secret", "mode": "test"},
        headers=headers,
    )
    key_id = created.json()["id"]
    await client.delete(f"/v1/projects/{acme.project.id}/api_keys/{key_id}", headers=headers)
    log = f"/v1/organizations/{acme.organization.id}/audit_events"
    events = (await client.get(log, params={"target_id": key_id}, headers=headers)).json()["data"]
    assert [e["action"] for e in events] == ["api_key.revoked", "api_key.created"]
    event = events[1]
    assert event["actor_type"] == "access_token"
    assert event["actor_id"] == acme.owner.user.id
    assert event["actor_email"] == acme.owner.user.email
    assert event["ip"] == "127.0.0.1"
    assert event["user_agent"] == "audit-test/1.0"
    assert event["organization_id"] == acme.organization.id
    assert event["details"]["mode"] == "test"
    one = await client.get(f"{log}/{event['id']}", headers=headers)
    assert one.json() == event

    prefixed = await client.get(log, params={"action": "api_key.*"}, headers=headers)
    assert len(prefixed.json()["data"]) == 2
    exact = await client.get(log, params={"action": "api_key.revoked"}, headers=headers)
    assert len(exact.json()["data"]) == 1
    future = await client.get(log, params={"created_gte": "2999-01-01T00:00:00Z"}, headers=headers)
    assert future.json()["data"] == []
    bad = await client.get(log, params={"created_gte": "yesterday"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "created_gte"


async def test_only_owners_and_admins_read_the_log(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    log = f"/v1/organizations/{acme.organization.id}/audit_events"
    for role in Role:
        response = await client.get(log, headers=acme.people[role].headers)
        expected = 200 if role in (Role.OWNER, Role.ADMIN) else 403
        assert response.status_code == expected, role


async def test_events_cannot_be_changed_or_deleted_by_the_application(database: None) -> None:
    event = await AuditEvent.create(actor_type="system", action="project.created")
    event.action = "project.deleted"
    with pytest.raises(AppendOnly):
        await event.save()
    with pytest.raises(AppendOnly):
        await event.delete()
    assert (await AuditEvent.get(id=event.id)).action == "project.created"


async def test_the_log_is_filtered_by_the_actors_email_even_after_they_left(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    admin, owner = acme.people[Role.ADMIN], acme.owner
    await client.post(
        f"/v1/organizations/{acme.organization.id}/invitations",
        json={"email": "new@acme.example", "role": "viewer"},
        headers=admin.headers,
    )
    await client.patch(
        f"/v1/organizations/{acme.organization.id}",
        json={"name": "Acme Inc"},
        headers=owner.headers,
    )
    log = f"/v1/organizations/{acme.organization.id}/audit_events"
    membership = await Membership.get(user=admin.user, organization=acme.organization)
    await client.delete(
        f"/v1/organizations/{acme.organization.id}/members/{membership.id}", headers=admin.headers
    )
    by_admin = await client.get(
        log, params={"actor_email": admin.user.email.upper()}, headers=owner.headers
    )
    assert by_admin.status_code == 200, by_admin.text
    assert [e["action"] for e in by_admin.json()["data"]] == [
        "member.removed",
        "invitation.created",
    ]
    by_owner = await client.get(
        log, params={"actor_email": owner.user.email, "action": "organization.*"},
        headers=owner.headers,
    )  # fmt: skip
    assert [e["action"] for e in by_owner.json()["data"]] == ["organization.updated"]
    bad = await client.get(log, params={"actor_email": "not an email"}, headers=owner.headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "actor_email"
