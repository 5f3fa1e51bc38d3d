"""Deleting a project (or its organization) while a worker fans its push out: the deletion
wins, cleanly.

It used to be one cascading DELETE that locked delivery rows in one order while the worker's
UPDATEs locked them in another: PostgreSQL's ``deadlock detected``, a 500, the project still
there and its key still working. Counted at the fake APNs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from controlplane.app import create_app
from controlplane.auth.admin import issue_access_token
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.keys import hash_key
from controlplane.crypto import KeyRing
from controlplane.models import (
    ApiKey,
    AuditEvent,
    Delivery,
    Device,
    KeyKind,
    KeyMode,
    Membership,
    Platform,
    Project,
    Push,
    Role,
)
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import SigningKey
from tests.support.servers import running_worker, serving
from tests.support.tenants import Tenant, make_tenant
from tests.workers.test_deliver_activities import bearer, fake_settings, live_app
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM

pytestmark = pytest.mark.database

DEVICES = 2500


async def _devices(tenant: Tenant, settings: Settings) -> None:
    keyring = KeyRing([k.get_secret_value() for k in settings.encryption_keys])
    tokens = [f"{n + 1:064x}" for n in range(DEVICES)]
    await Device.bulk_create([
        Device(project=tenant.project, mode=KeyMode.LIVE, platform=Platform.IOS,
               token_hash=hash_key(token, TEST_SECRET_KEY),
               token_encrypted=keyring.encrypt(token.encode()), token_last_four=token[-4:],
               user_id="everyone")
        for token in tokens
    ])  # fmt: skip


@pytest.mark.parametrize("deleted_object", ["project", "organization"])
async def test_deleting_a_project_during_its_fan_out_wins_cleanly(
    deleted_object: str,
    make_settings: Callable[..., Settings],
    apns_fake: FakeAPNs,
    signing_key: SigningKey,
    database: None,
) -> None:
    settings = make_settings(
        apns_host=apns_fake.host, apns_port=apns_fake.port,
        apns_ca_file=apns_fake.ca_file,  # type: ignore[attr-defined]
        delivery_in_flight_per_connection=200,
    )  # fmt: skip
    acme = await make_tenant("Acme")
    _, live = await issue_api_key(acme.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    await _devices(acme, settings)
    auth = {"Authorization": f"Bearer {live}"}
    project = f"/v1/projects/{acme.project.id}"
    deleted_id = acme.project.id if deleted_object == "project" else acme.organization.id
    path = f"/v1/{deleted_object}s/{deleted_id}"
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as api:
        uploaded = await api.put("/v1/credentials/apns", json={
            "key": signing_key.pem, "key_id": signing_key.key_id,
            "team_id": signing_key.team_id, "topic": "com.example.app",
            "environment": "sandbox"}, headers=auth)  # fmt: skip
        assert uploaded.status_code == 200, uploaded.text
        body = {"kind": "alert", "alert": {"title": "Flash sale"},
                "to": {"user_ids": ["everyone"]}}  # fmt: skip
        accepted = await api.post("/v1/pushes", json=body, headers=auth)
        assert accepted.status_code == 202, accepted.text
        push_id = accepted.json()["id"]
        async with running_worker(settings):
            deadline = time.monotonic() + 60
            while len(apns_fake.received) < DEVICES // 5:
                assert time.monotonic() < deadline, "the fan-out never got going"
                await asyncio.sleep(0.005)
            deleted = await api.delete(path, headers=acme.owner.headers)
            sent_when_answered = len(apns_fake.received)
            await asyncio.sleep(1.0)  # the worker goes on with whatever it still holds
            sent_later = len(apns_fake.received)
            key_after = await api.get("/v1/api_key", headers=auth)
            project_after = await api.get(project, headers=acme.owner.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"object": deleted_object, "id": deleted_id, "deleted": True}
    assert sent_when_answered < DEVICES, "the delete came too late to prove anything"
    assert sent_later == sent_when_answered  # nothing went out after the answer
    assert key_after.status_code == 401
    assert project_after.status_code == 404
    assert not await Project.exists(id=acme.project.id)
    for model in (Push, Device, ApiKey):
        assert not await model.filter(project_id=acme.project.id).exists(), model.__name__
    assert not await Delivery.filter(push_id=push_id).exists()
    assert await AuditEvent.filter(
        action=f"{deleted_object}.deleted", target_id=deleted_id
    ).exists()


async def test_deleting_a_project_deletes_its_open_broadcast_channels_at_apple(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM, signing_key: SigningKey
) -> None:
    client = await pipeline(**fake_settings(apns_fake, fcm_fake))
    app = await live_app(client, signing_key, fcm_fake)
    for match in ("Lyon-Nice", "Lens-Brest"):
        started = await client.post("/v1/activities", headers=bearer(app.secret), json={
            "activity_type": "MatchAttributes", "attributes": {"match": match},
            "content_state": {"score": "0-0"}, "broadcast": True,
        })  # fmt: skip
        assert started.status_code == 201, started.text
    assert len(apns_fake.channels_of("com.example.app")) == 2
    project = await Project.get(organization_id=app.organization_id)
    owner = await Membership.get(organization_id=app.organization_id, role=Role.OWNER)
    _, token = await issue_access_token(await owner.user, name="t", pepper=TEST_SECRET_KEY)
    deleted = await client.delete(f"/v1/projects/{project.id}",
                                  headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert deleted.status_code == 200, deleted.text
    # With the project go its APNs key and its activities: nothing could delete them later,
    # and they would count against the app's 10,000 channels for good.
    assert apns_fake.channels_of("com.example.app") == []
