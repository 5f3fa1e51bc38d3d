"""No tenant can see or touch another's data: every /v1 route, walked with another tenant's ids.

The route list comes from the app itself, so a route added later is walked automatically;
a new path parameter must be given a foreign id in ``foreign_ids`` or this test fails.

Analytics events are named by the app's own event ids, also within the caller's namespace: a
batch carrying the victim's event id is the attacker's own event, and the attacker's summary,
list and CSV export show nothing of the victim's events or rollups.

A state ``{key}`` is a name in the caller's own namespace, not an id: the victim's key reads
and deletes nothing (404), and a PUT with it writes the attacker's own entry, never the
victim's (:data:`UPSERTS_BY_NAME`, checked at the end). So is a widget ``{kind}``: reloading
the victim's kind writes the attacker's own ``widget:{kind}`` entry and pushes to the
attacker's own devices. A realtime ``{channel}`` too: publishing on the victim's channel name
publishes on the attacker's own channel (channels are per project and mode), and subscribing
to the victim's private channel is the attacker's own private channel, refused without a
token — the victim's messages and history are never reached. An end user's ``{user_id}`` too:
exporting or erasing the victim's user id reaches the attacker's own project only — an empty
export, an erase of nothing (:data:`NAMED_IN_OWN_PROJECT`) — and the victim's devices and
events of that user stay.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from controlplane.api.routing import ApiRoute, Auth, Operation
from controlplane.models import (
    Activity,
    ActivityStatus,
    AnalyticsEvent,
    AnalyticsRollup,
    ApiKey,
    AuditEvent,
    Delivery,
    Device,
    Export,
    Invitation,
    KeyMode,
    Membership,
    PersonalAccessToken,
    Platform,
    Project,
    Push,
    PushStatus,
    Role,
    Session,
    StateEntry,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from controlplane.realtime.channels import Channel
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

_PARAM = re.compile(r"{(\w+)}")
VICTIM_STATE_KEY = "victim:secret"
VICTIM_WIDGET_KIND = "ScoreWidget"  # not "Victim…": the walk looks for that name
VICTIM_EVENT_ID = "victim-event-1"
VICTIM_CHANNEL = "private:victim-room"
# Operations that create what a name in the caller's namespace names (a valid body is sent),
# with the status they answer.
UPSERTS_BY_NAME: dict[tuple[str, str], tuple[dict[str, object], int]] = {
    ("PUT", "/v1/state/{key}"): ({"value": "attacker's"}, 200),
    ("POST", "/v1/widgets/{kind}/reload"): (
        {"to": {"tags": ["victim"]}, "data": {"value": "attacker's"}}, 202,
    ),
    ("POST", "/v1/events"): ({"events": [{
        "id": VICTIM_EVENT_ID, "name": "custom.attackers",
        "timestamp": datetime.now(UTC).isoformat(),
    }]}, 200),
    ("POST", "/v1/realtime/channels/{channel}/messages"): ({"data": "attacker's"}, 200),
}  # fmt: skip
# Operations on a name in the caller's namespace that answer a refusal rather than 404, with
# the status and code: the attacker's own private channel, without a subscribe token.
REFUSED_BY_NAME: dict[tuple[str, str], tuple[int, str]] = {
    ("GET", "/v1/realtime/channels/{channel}"): (403, "realtime_token_required"),
}
# Operations on a name in the caller's own project that answer for nobody there, with their
# status: the victim's user is nobody in the attacker's project.
NAMED_IN_OWN_PROJECT: dict[tuple[str, str], int] = {
    ("GET", "/v1/users/{user_id}/export"): 200,
    ("DELETE", "/v1/users/{user_id}"): 200,
}


def v1_operations(app: Starlette) -> list[Operation]:
    operations = [
        operation
        for route in app.routes
        if isinstance(route, ApiRoute) and route.path.startswith("/v1/")
        for operation in route.operations.values()
    ]
    assert len(operations) > 30, "the walk found suspiciously few routes"
    return operations


async def make_victim_rows(victim: Tenant) -> dict[str, str]:
    """An id of ``victim``'s for each path parameter the API has."""
    membership = await Membership.get(organization=victim.organization, role=Role.OWNER)
    key = await ApiKey.filter(project=victim.project).first()
    assert key is not None
    invitation = await Invitation.create(
        organization=victim.organization,
        email="new@victim.example",
        role=Role.VIEWER,
        token_hash="f" * 64,
        expires_at=victim.organization.created_at.replace(year=2999),
    )
    event = await AuditEvent.create(
        organization_id=victim.organization.id,
        actor_type="user",
        actor_id=victim.owner.user.id,
        action="project.created",
    )
    token = await PersonalAccessToken.get(user=victim.owner.user)
    session = await Session.create(
        user=victim.owner.user, token_hash="d" * 64, method="password", ip="203.0.113.7",
        user_agent="victim's browser", expires_at=victim.organization.created_at.replace(year=2999),
    )  # fmt: skip
    device = await Device.create(
        project=victim.project, mode=KeyMode.TEST, platform=Platform.IOS, token_hash="e" * 64,
        token_encrypted="not-read-here", token_last_four="abcd", user_id="victim-user",
        tags=["victim"],
    )  # fmt: skip
    push = await Push.create(
        project=victim.project, mode=KeyMode.TEST, kind="alert", content={}, target={},
        status=PushStatus.SCHEDULED, recipients=0,
    )  # fmt: skip
    activity = await Activity.create(
        project=victim.project, mode=KeyMode.TEST, activity_type="OrderTracking",
        attributes={"order": "victim"}, content_state={"eta": 5}, status=ActivityStatus.ACTIVE,
        started_by="server", last_timestamp=1,
    )  # fmt: skip
    endpoint = await WebhookEndpoint.create(
        project=victim.project, mode=KeyMode.TEST, url_encrypted="not-read-here",
        url_display="https://victim.example/hooks", events=["*"], secret_encrypted="not-read",
    )  # fmt: skip
    told = await WebhookEvent.create(
        project=victim.project, mode=KeyMode.TEST, type="webhook.test", data={"v": "victim"}
    )
    delivery = await WebhookDelivery.create(
        project=victim.project, mode=KeyMode.TEST, endpoint=endpoint, event=told,
        status=WebhookDeliveryStatus.SUCCEEDED,
    )  # fmt: skip
    export = await Export.create(project=victim.project, mode=KeyMode.TEST)
    now = datetime.now(UTC)
    for name in (VICTIM_STATE_KEY, f"widget:{VICTIM_WIDGET_KIND}"):
        await StateEntry.create(
            project=victim.project, mode=KeyMode.TEST, key=name, value='"victim\'s"',
            public=True, size_bytes=30, created_at=now, updated_at=now,
        )  # fmt: skip
    await AnalyticsEvent.create(
        project=victim.project, mode=KeyMode.TEST, client_id=VICTIM_EVENT_ID,
        name="custom.Victim_signup", occurred_at=now, received_at=now, user_id="victim-user",
        properties={"plan": "Victim's"},
    )  # fmt: skip
    await AnalyticsRollup.create(
        project=victim.project, mode=KeyMode.TEST, granularity="day",
        bucket=now.replace(hour=0, minute=0, second=0, microsecond=0),
        name="custom.Victim_signup", dimension="all", value="", count=1,
    )  # fmt: skip
    return {
        "key": VICTIM_STATE_KEY,
        "kind": VICTIM_WIDGET_KIND,
        "channel": VICTIM_CHANNEL,
        "user_id": "victim-user",
        "organization_id": victim.organization.id,
        "project_id": victim.project.id,
        "member_id": membership.id,
        "invitation_id": invitation.id,
        "api_key_id": key.id,
        "audit_event_id": event.id,
        "access_token_id": token.id,
        "session_id": session.id,
        "device_id": device.id,
        "push_id": push.id,
        "activity_id": activity.id,
        "webhook_endpoint_id": endpoint.id,
        "webhook_delivery_id": delivery.id,
        "export_id": export.id,
    }


def fill(path: str, ids: dict[str, str]) -> str:
    missing = [name for name in _PARAM.findall(path) if name not in ids]
    assert not missing, f"{path}: give the isolation walk a foreign id for {missing}"
    return _PARAM.sub(lambda match: ids[match[1]], path)


async def test_every_v1_route_answers_404_for_another_tenants_ids(
    app: Starlette, client: httpx.AsyncClient, database: None
) -> None:
    attacker = await make_tenant("Attacker")
    victim = await make_tenant("Victim")
    victim_ids = await make_victim_rows(victim)
    own_ids = {
        "organization_id": attacker.organization.id,
        "project_id": attacker.project.id,
    }
    credentials = {
        Auth.ADMIN: attacker.owner.headers,
        Auth.API_KEY: {"Authorization": f"Bearer {attacker.secret_key}"},
    }
    walked = 0
    # Upserts last: the entry one creates must not answer the walk's reads and deletes.
    walk = sorted(v1_operations(app), key=lambda op: (op.method, op.path) in UPSERTS_BY_NAME)
    for operation in walk:
        if operation.auth is Auth.NONE:
            continue
        headers = credentials[operation.auth]
        params = _PARAM.findall(operation.path)
        attempts = []
        if params:
            attempts.append(fill(operation.path, victim_ids))
            if len(params) > 1:
                # The attacker's own organization or project, the victim's child object.
                attempts.append(fill(operation.path, {**victim_ids, **own_ids}))
        else:
            attempts.append(operation.path)
        upsert = UPSERTS_BY_NAME.get((operation.method, operation.path))
        for path in attempts:
            response = await client.request(
                operation.method,
                path,
                headers=headers,
                json=upsert[0] if upsert is not None else {} if operation.body else None,
            )
            walked += 1
            label = f"{operation.method} {path}"
            for value in victim_ids.values():
                # An id the caller sent may be echoed in "No such …"; any other is a leak.
                if value not in path:
                    assert value not in response.text, f"{label} leaked {value}"
            assert "Victim" not in response.text, label
            refusal = REFUSED_BY_NAME.get((operation.method, operation.path))
            if upsert is not None:  # the attacker's own, under the same name
                assert response.status_code == upsert[1], f"{label}: {response.text}"
            elif refusal is not None:
                assert response.status_code == refusal[0], f"{label}: {response.text}"
                assert response.json()["error"]["code"] == refusal[1], label
            elif (operation.method, operation.path) in NAMED_IN_OWN_PROJECT:
                expected = NAMED_IN_OWN_PROJECT[(operation.method, operation.path)]
                assert response.status_code == expected, f"{label}: {response.text}"
                assert "victim-user" not in response.text.replace('"user_id":"victim-user"', "")
                assert not any(response.json().get(kind) for kind in ("devices", "events"))
                assert not any(response.json().get("erased", {}).values()), label
            elif operation.instance_admin:  # superusers only: refused before any id is read
                assert response.status_code == 403, f"{label}: {response.status_code}"
                assert response.json()["error"]["code"] == "instance_admin_required", label
            elif params:
                assert response.status_code == 404, f"{label}: {response.status_code}"
                assert response.json()["error"]["type"] == "not_found_error", label
            else:
                assert response.status_code < 500, f"{label}: {response.text}"
    assert walked > 40

    # Nothing of the victim's changed.
    assert await Project.filter(id=victim.project.id, name="Victim app").exists()
    assert await ApiKey.filter(project=victim.project, revoked_at__isnull=True).count() == 1
    assert await Membership.filter(organization=victim.organization).count() == len(Role)
    assert await Invitation.filter(id=victim_ids["invitation_id"], revoked_at=None).exists()
    assert await PersonalAccessToken.filter(
        id=victim_ids["access_token_id"], revoked_at=None
    ).exists()
    assert await Session.filter(id=victim_ids["session_id"], revoked_at=None).exists()
    assert await Device.filter(id=victim_ids["device_id"], user_id="victim-user").exists()
    assert await AnalyticsEvent.filter(user_id="victim-user").count() == 1
    victim_endpoint = await WebhookEndpoint.get(id=victim_ids["webhook_endpoint_id"])
    assert (victim_endpoint.enabled, victim_endpoint.secret_encrypted) == (True, "not-read")
    assert await WebhookDelivery.filter(endpoint=victim_endpoint).count() == 1  # none resent
    victim_activity = await Activity.get(id=victim_ids["activity_id"])
    assert (victim_activity.content_state, victim_activity.version) == ({"eta": 5}, 1)
    for key in (VICTIM_STATE_KEY, f"widget:{VICTIM_WIDGET_KIND}"):
        victim_entry = await StateEntry.get(project=victim.project, key=key)
        assert (victim_entry.value, victim_entry.version) == ('"victim\'s"', 1), key
    # What the attacker wrote under the victim's names is its own.
    attackers = await StateEntry.filter(project=attacker.project).order_by("key")
    assert [(entry.key, entry.value) for entry in attackers] == [
        ("victim:secret", '"attacker\'s"'),
        (f"widget:{VICTIM_WIDGET_KIND}", '{"value":"attacker\'s"}'),
    ]
    victim_event = await AnalyticsEvent.get(client_id=VICTIM_EVENT_ID)
    assert (victim_event.project_id, victim_event.name) == (  # type: ignore[attr-defined]
        victim.project.id, "custom.Victim_signup",
    )  # fmt: skip
    # The message went on the attacker's own channel; the victim's has none.
    redis = Redis.from_url(app.state.settings.redis_url)
    try:
        victims = Channel(victim.project.id, KeyMode.TEST, VICTIM_CHANNEL)
        attackers_channel = Channel(attacker.project.id, KeyMode.TEST, VICTIM_CHANNEL)
        assert not await redis.exists(victims.history_key)
        history = await redis.xrange(attackers_channel.history_key)
        assert [fields[b"d"] for _, fields in history] == [b'"attacker\'s"']
    finally:
        await redis.aclose()
    # The reload pushed to none of the victim's devices (its tag is the victim's).
    assert not await Delivery.filter(device_id=victim_ids["device_id"]).exists()
    assert await Push.filter(project=victim.project).count() == 1  # the one made above


async def test_unregistering_a_token_reaches_only_the_callers_project(
    client: httpx.AsyncClient, database: None
) -> None:
    # POST /v1/devices/unregister names no id the walk could swap: it finds the device by its
    # token, which must be looked up in the caller's project only.
    attacker = await make_tenant("Attacker")
    victim = await make_tenant("Victim")
    token = {"token": "c0" * 32, "platform": "ios"}
    registered = await client.post(
        "/v1/devices", json=token, headers={"Authorization": f"Bearer {victim.secret_key}"}
    )
    assert registered.status_code == 200, registered.text
    refused = await client.post(
        "/v1/devices/unregister", json=token,
        headers={"Authorization": f"Bearer {attacker.secret_key}"},
    )  # fmt: skip
    assert refused.status_code == 404
    assert registered.json()["id"] not in refused.text
    assert await Device.filter(id=registered.json()["id"]).exists()


async def test_a_push_batch_reaches_only_the_callers_devices(
    client: httpx.AsyncClient, database: None
) -> None:
    # POST /v1/pushes/batch names devices inside its messages (ids, users, tags, raw tokens),
    # where the walk sends none: each must be looked up in the caller's project and mode only.
    attacker = await make_tenant("Attacker")
    victim = await make_tenant("Victim")
    token = "c1" * 32
    registered = await client.post(
        "/v1/devices", json={"token": token, "platform": "ios", "user_id": "victim-user",
                             "tags": ["victim"]},
        headers={"Authorization": f"Bearer {victim.secret_key}"},
    )  # fmt: skip
    victim_device = registered.json()["id"]
    alert = {"kind": "alert", "alert": {"title": "hi"}}
    response = await client.post(
        "/v1/pushes/batch",
        json={"messages": [
            {**alert, "to": {"device_ids": [victim_device]}},
            {**alert, "to": {"user_ids": ["victim-user"], "tags": ["victim"]}},
            {**alert, "device_token": {"platform": "ios", "token": token}},
        ]},
        headers={"Authorization": f"Bearer {attacker.secret_key}"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["push"]["recipients"] for r in results] == [0, 0, 1]
    assert victim_device not in response.text
    # The raw token became the attacker's own device; the victim's is untouched.
    assert not await Delivery.filter(device_id=victim_device).exists()
    mine = await Device.get(project=attacker.project)
    assert mine.id != victim_device
    victims = await Device.get(id=victim_device)
    assert (victims.user_id, victims.tags) == ("victim-user", ["victim"])
