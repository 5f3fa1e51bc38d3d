"""``/v1/instance``: the operator sees every organization and sets plans; nobody else can."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from controlplane.models import AuditEvent, KeyMode, Organization, UsagePeriod, User
from controlplane.usage import period_start
from tests.support.tenants import Person, make_person, make_tenant

pytestmark = pytest.mark.database


async def operator() -> Person:
    person = await make_person("ops@brik.example")
    await User.filter(id=person.user.id).update(is_superuser=True)
    return person


async def test_the_operator_sees_every_organization_and_sets_their_plans(
    client: httpx.AsyncClient,
) -> None:
    acme, globex = await make_tenant("Acme"), await make_tenant("Globex")
    this_month = period_start(datetime.now(UTC))
    await UsagePeriod.create(organization=acme.organization, period_start=this_month,
                             mode=KeyMode.LIVE, pushes=42)  # fmt: skip
    await UsagePeriod.create(organization=acme.organization, period_start=this_month.replace(
        year=this_month.year - 1), mode=KeyMode.TEST, pushes=99)  # fmt: skip
    ops = await operator()  # a member of neither
    listed = await client.get("/v1/instance/organizations", headers=ops.headers)
    assert listed.status_code == 200, listed.text
    assert {org["name"] for org in listed.json()["data"]} == {"Acme", "Globex"}
    assert {org["plan_source"] for org in listed.json()["data"]} == {"default"}
    pushes = {org["name"]: org["pushes_this_month"] for org in listed.json()["data"]}
    assert pushes == {"Acme": {"live": 42, "test": 0, "limit": 10_000},  # last year's: not
                      "Globex": {"live": 0, "test": 0, "limit": 10_000}}  # fmt: skip

    path = f"/v1/instance/organizations/{acme.organization.id}/plan"
    changed = await client.put(path, json={"plan": "enterprise"}, headers=ops.headers)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["plan"], changed.json()["plan_source"]) == ("enterprise", "admin")
    assert changed.json()["pushes_this_month"] == {"live": 42, "test": 0, "limit": None}
    stored = await Organization.get(id=acme.organization.id)
    assert (stored.plan, stored.plan_source) == ("enterprise", "admin")
    assert (await Organization.get(id=globex.organization.id)).plan == "free"
    usage = await client.get(f"/v1/organizations/{acme.organization.id}/usage",
                             headers=acme.owner.headers)  # fmt: skip
    assert usage.json()["live"]["pushes"]["limit"] is None  # enterprise: unlimited

    handed_back = await client.put(path, json={"plan": "billing"}, headers=ops.headers)
    assert (handed_back.json()["plan"], handed_back.json()["plan_source"]) == ("free", "billing")
    events = await AuditEvent.filter(
        organization_id=acme.organization.id, action="organization.plan_changed"
    ).order_by("created_at")
    assert [(e.actor_id, e.details["plan"]) for e in events] == [
        (ops.user.id, "enterprise"), (ops.user.id, "free"),
    ]  # fmt: skip


async def test_only_superusers_reach_the_instance_api(client: httpx.AsyncClient) -> None:
    acme = await make_tenant("Acme")
    path = f"/v1/instance/organizations/{acme.organization.id}/plan"
    for person in acme.people.values():  # even the organization's own owner
        for method, url, body in (("GET", "/v1/instance/organizations", None),
                                  ("PUT", path, {"plan": "enterprise"})):  # fmt: skip
            response = await client.request(method, url, json=body, headers=person.headers)
            assert response.status_code == 403, (person.user.email, url)
            assert response.json()["error"]["code"] == "instance_admin_required"
    assert (await Organization.get(id=acme.organization.id)).plan == "free"
    anonymous = await client.get("/v1/instance/organizations")
    assert anonymous.status_code == 401

    ops = await operator()
    unknown = await client.put("/v1/instance/organizations/org_" + "0" * 24 + "/plan",
                               json={"plan": "pro"}, headers=ops.headers)  # fmt: skip
    assert unknown.status_code == 404
    invalid = await client.put(path, json={"plan": "platinum"}, headers=ops.headers)
    assert invalid.status_code == 400
    assert invalid.json()["error"]["param"] == "plan"
