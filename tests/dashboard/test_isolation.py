"""No dashboard page shows or changes another tenant's data: every page walked with their ids.

The pages come from the app's routes, so a page added later is walked automatically; a path
parameter with no foreign id fails the walk (as the API's walk does: the foreign ids are
``make_victim_rows``' in tests/controlplane/test_isolation.py). Each page is asked twice, by
the owner of another organization: with every id the victim's (their organization or project
itself), and within the attacker's own project with the victim's object ids. Every answer is
404, for reading (GET) and for every form (POST) alike, and nothing of the victim's changes.
"""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from controlplane.models import Activity as ActivityRow
from controlplane.models import (
    ActivityStatus,
    ApiKey,
    Device,
    Invitation,
    Membership,
    PersonalAccessToken,
    Push,
    PushStatus,
    Role,
    Session,
)
from tests.controlplane.test_isolation import make_victim_rows
from tests.support.servers import serving
from tests.support.tenants import Person, make_tenant

pytestmark = pytest.mark.database

_PARAM = re.compile(r"{(\w+)}")
# Names, not ids (the mode, a provider, a state key or widget kind in the caller's own
# namespace): the walk gives them plain values.
NAMES = {"mode": "test", "provider": "apns", "key": "order:A-1"}
# Pages that write what a name in the caller's namespace names: asked with the attacker's own
# project they act on the attacker's data (a 303 after success, or the form's own refusal),
# never the victim's — the victim's rows are checked at the end.
WRITES_BY_NAME: set[tuple[str, str]] = set()
OWN = ("organization_id", "project_id")


def dashboard_routes(app: Starlette) -> list[Route]:
    routes = [
        route
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/dashboard/") and "{" in route.path
    ]
    assert len(routes) >= 10, "the walk found suspiciously few dashboard pages"
    return routes


def fill(path: str, ids: dict[str, str]) -> str:
    missing = [name for name in _PARAM.findall(path) if name not in ids]
    assert not missing, f"{path}: give the dashboard isolation walk a foreign id for {missing}"
    return _PARAM.sub(lambda match: ids[match[1]], path)


async def sign_in(client: httpx.AsyncClient, person: Person) -> None:
    """Sign ``client`` in through the dashboard's form (its cookie jar keeps the session)."""
    answer = await client.post(
        "/dashboard/sign-in",
        data={"email": person.user.email, "password": person.password, "next": "/dashboard/"},
    )
    assert answer.status_code == 303, answer.text


async def test_every_dashboard_page_answers_404_for_another_tenants_ids(
    app: Starlette, database: None
) -> None:
    attacker = await make_tenant("Attacker Co", roles=(Role.OWNER,))
    victim = await make_tenant("Victim Co", roles=(Role.OWNER,))
    victim_ids = {**await make_victim_rows(victim), **NAMES}
    own_scope = {
        **victim_ids,
        "organization_id": attacker.organization.id,
        "project_id": attacker.project.id,
    }
    walked = []
    async with (
        serving(app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"Origin": base_url}) as client,
    ):
        await sign_in(client, attacker.owner)
        for route in dashboard_routes(app):
            assert route.methods is not None
            for method in sorted(route.methods - {"HEAD"}):
                for ids in (victim_ids, own_scope):
                    params = set(_PARAM.findall(route.path))
                    if ids is own_scope and not params - {*OWN, *NAMES}:
                        continue  # nothing of the victim's left in the path
                    if ids is own_scope and (method, route.path) in WRITES_BY_NAME:
                        continue
                    path = fill(route.path, ids)
                    answer = await client.request(method, path, data={"action": "revoke"})
                    walked.append((method, path))
                    assert answer.status_code == 404, (method, path, answer.status_code)
                    assert "No such" in answer.text, (method, path)  # the API's message
    assert len(walked) >= 20
    # Nothing of the victim's changed.
    assert await Device.filter(id=victim_ids["device_id"]).exists()
    push = await Push.get(id=victim_ids["push_id"])
    assert push.status is PushStatus.SCHEDULED
    key = await ApiKey.get(id=victim_ids["api_key_id"])
    assert key.revoked_at is None
    activity = await ActivityRow.get(id=victim_ids["activity_id"])
    assert activity.status is ActivityStatus.ACTIVE
    # Members, invitations, tokens and sessions: still there, none withdrawn or revoked.
    assert await Membership.filter(id=victim_ids["member_id"], role=Role.OWNER).exists()
    assert await Invitation.filter(id=victim_ids["invitation_id"], revoked_at=None).exists()
    for model, param in ((PersonalAccessToken, "access_token_id"), (Session, "session_id")):
        assert await model.filter(id=victim_ids[param], revoked_at=None).exists(), param
