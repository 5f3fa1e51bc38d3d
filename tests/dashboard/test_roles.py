"""What a role may not do, no form does: every form of an organization, posted by a viewer (and
the organization's own forms by a developer), with every action it takes, is refused and
changes nothing. The forms come from the app's routes, so a form added later is walked too."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.models import (
    Activity,
    ActivityStatus,
    ApiKey,
    Device,
    Invitation,
    Membership,
    Project,
    ProviderCredential,
    Push,
    PushStatus,
    Role,
    StateEntry,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.controlplane.test_isolation import make_victim_rows
from tests.dashboard.test_isolation import NAMES, dashboard_routes, fill, sign_in
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

ACTIONS = ("revoke", "delete", "set", "role", "remove", "resend", "update", "roll", "preview",
           "test", "rotate", "disable", "enable")  # fmt: skip
# The organization's own forms (people, projects, billing): developers may not use them either.
ORGANIZATION_FORMS = re.compile(r"^/dashboard/organizations/\{organization_id\}/")


def form(tenant_ids: dict[str, str], action: str) -> dict[str, str]:
    """Every field any form reads, filled as someone who meant it would."""
    return {
        "action": action, "kind": "alert", "alert.title": "Hi", "to.user_ids": "victim-user",
        "user_ids": "victim-user", "key": "order:B-2", "value": '{"stage": "lost"}',
        "content_state": '{"eta": 0}', "name": "Renamed", "email": "new@outsider.example",
        "role": "owner", "service_account": "{}", "scopes": "pushes:write",
        "organization_id": tenant_ids["organization_id"], "plan": "enterprise",
        "url": "https://outsider.example/hooks", "events": "*",
        "delivery_id": tenant_ids["webhook_delivery_id"],
    }  # fmt: skip


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
async def test_a_role_posting_every_form_it_may_not_use_is_refused_and_nothing_changes(
    app: Starlette, database: None, role: Role
) -> None:
    tenant = await make_tenant("Roles Co")
    ids = {**NAMES, **await make_victim_rows(tenant)}
    state_before = await StateEntry.filter(project=tenant.project).values_list("key", "value")
    forms = [
        route.path
        for route in dashboard_routes(app)
        if route.methods and "POST" in route.methods
        and not route.path.startswith("/dashboard/account/")  # one's own account
        and (role is Role.VIEWER or ORGANIZATION_FORMS.match(route.path))
    ]  # fmt: skip
    assert len(forms) >= (15 if role is Role.VIEWER else 5)
    answers: dict[tuple[str, str], int] = {}
    async with (
        serving(app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"Origin": base_url}) as client,
    ):
        await sign_in(client, tenant.people[role])
        for path in forms:
            providers = ("apns", "fcm") if "{provider}" in path else ("apns",)
            for filled in {fill(path, {**ids, "provider": provider}) for provider in providers}:
                for action in ACTIONS:
                    answer = await client.post(filled, data=form(ids, action))
                    answers[(filled, action)] = answer.status_code
    allowed = {where: status for where, status in answers.items() if status not in (400, 403)}
    # A viewer previews a push (it sends nothing): that is reading.
    previews = {
        where for where, status in allowed.items() if where[0].endswith("/compose")
        and where[1] == "preview" and status == 200
    }  # fmt: skip
    assert set(allowed) == previews, allowed
    # Nothing of the organization's changed.
    assert await Device.filter(id=ids["device_id"]).exists()
    push = await Push.get(id=ids["push_id"])
    assert push.status is PushStatus.SCHEDULED
    assert await Push.filter(project=tenant.project).count() == 1
    assert await ApiKey.filter(project=tenant.project, revoked_at=None).count() == 1
    activity = await Activity.get(id=ids["activity_id"])
    assert activity.status is ActivityStatus.ACTIVE
    assert await StateEntry.filter(project=tenant.project).values_list("key", "value") == (
        state_before
    )
    assert not await ProviderCredential.exists()
    assert await Project.filter(organization=tenant.organization).count() == 1
    roles = await Membership.filter(organization=tenant.organization).values_list("role", flat=True)
    assert sorted(roles) == sorted(Role)
    assert await Invitation.filter(organization=tenant.organization).count() == 1
    assert await Invitation.filter(id=ids["invitation_id"], revoked_at=None).exists()
    endpoint = await WebhookEndpoint.get(project=tenant.project)
    assert (endpoint.id, endpoint.enabled, endpoint.secret_encrypted) == (
        ids["webhook_endpoint_id"], True, "not-read",
    )  # fmt: skip
    assert await WebhookDelivery.filter(endpoint=endpoint).count() == 1  # none sent or resent


async def test_a_member_removed_while_signed_in_reaches_nothing_of_the_organization_at_once(
    app: Starlette, database: None
) -> None:
    tenant = await make_tenant("Leaving Co", roles=(Role.OWNER, Role.DEVELOPER))
    ids = await make_victim_rows(tenant)
    developer = tenant.people[Role.DEVELOPER]
    membership = await Membership.get(organization=tenant.organization, user=developer.user)
    project = f"/dashboard/projects/{tenant.project.id}/test"
    async with (
        serving(app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"Origin": base_url}) as client,
        httpx.AsyncClient(base_url=base_url, headers=tenant.owner.headers) as owner,
    ):
        await sign_in(client, developer)
        assert (await client.get(f"{project}/devices")).status_code == 200
        removed = await owner.delete(
            f"/v1/organizations/{tenant.organization.id}/members/{membership.id}"
        )
        assert removed.status_code == 200, removed.text
        # The same browser, the same session: the organization is gone from it.
        pages = [project, f"{project}/devices/{ids['device_id']}", f"{project}/api-keys",
                 f"/dashboard/organizations/{tenant.organization.id}/members"]  # fmt: skip
        for page in pages:
            assert (await client.get(page)).status_code == 404, page
        deleted = await client.post(f"{project}/devices/{ids['device_id']}/delete", data={"x": "1"})
        assert deleted.status_code == 404
        home = await client.get("/dashboard/", follow_redirects=True)
        assert home.status_code == 200
        assert "Leaving Co" not in home.text
    assert await Device.filter(id=ids["device_id"]).exists()
