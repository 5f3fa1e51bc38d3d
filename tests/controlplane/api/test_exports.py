"""Project exports: asked for through the API, built by a real worker, downloaded by a signed
link, deleted when they expire."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.peppers import PepperRing
from controlplane.exports import jobs
from controlplane.models import AnalyticsEvent, AuditEvent, Export, KeyKind, KeyMode
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.servers import running_worker, serving
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database

IOS_TOKEN = "c3" * 32
LIVE_ACTIVITY_TOKEN = "d4" * 32
ANDROID_TOKEN = "fcm:export-me-" + "q" * 40


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def populate(api: httpx.AsyncClient, acme: Tenant, events: int = 3) -> None:
    """A project with devices, state, a push and its deliveries, and events."""
    server = bearer(acme.secret_key)
    for body in (
        {"token": IOS_TOKEN, "platform": "ios", "user_id": "u1", "tags": ["beta"],
         "live_activity_token": LIVE_ACTIVITY_TOKEN},
        {"token": ANDROID_TOKEN, "platform": "android", "user_id": "u2", "tags": ["beta"]},
    ):  # fmt: skip
        assert (await api.post("/v1/devices", json=body, headers=server)).status_code == 200
    put = await api.put("/v1/state/config", json={"value": {"flag": True}}, headers=server)
    assert put.status_code in (200, 201), put.text
    alert = {"kind": "alert", "alert": {"title": "Hello"}, "to": {"tags": ["beta"]}}
    pushed = await api.post("/v1/pushes", json=alert, headers=server)
    assert pushed.status_code == 202, pushed.text
    now = datetime.now(UTC)
    await AnalyticsEvent.bulk_create(
        [
            AnalyticsEvent(
                project=acme.project,
                mode=KeyMode.TEST,
                client_id=f"ev-{number}",
                name="widget.impression",
                occurred_at=now,
                received_at=now,
                widget="Score",
            )
            for number in range(events)
        ],
        batch_size=5000,
    )


async def settled(api: httpx.AsyncClient, key: str, export_id: str, within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        shown = (await api.get(f"/v1/exports/{export_id}", headers=bearer(key))).json()
        if shown["status"] in ("succeeded", "failed"):
            return shown
        await asyncio.sleep(0.1)
    raise AssertionError(f"export {export_id} did not finish: {shown}")


def members(archive: bytes) -> dict[str, list[Any]]:
    """The archive's NDJSON files as lists of records, and its manifest."""
    found: dict[str, list[Any]] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            stream = tar.extractfile(member)
            assert stream is not None
            text = stream.read().decode()
            if member.name == "manifest.json":
                found["manifest"] = [json.loads(text)]
            else:
                found[member.name.removesuffix(".ndjson")] = [
                    json.loads(line) for line in text.splitlines()
                ]
    return found


async def test_an_export_is_built_by_the_worker_and_downloaded_by_its_signed_link(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    settings = make_settings(export_dir=tmp_path / "exports")
    acme = await make_tenant("Acme")
    async with serving(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as api:
        await populate(api, acme)
        asked = await api.post("/v1/exports", headers=bearer(acme.secret_key))
        assert asked.status_code == 202, asked.text
        export = asked.json()
        assert (export["object"], export["status"], export["download_url"]) == (
            "export", "queued", None,
        )  # fmt: skip
        again = await api.post("/v1/exports", headers=bearer(acme.secret_key))
        assert (again.status_code, again.json()["error"]["code"]) == (409, "export_in_progress")
        async with running_worker(settings):
            done = await settled(api, acme.secret_key, export["id"])
        assert done["status"] == "succeeded", done
        assert done["counts"] == {
            "devices": 2, "activities": 0, "activity_tokens": 0, "state": 1, "pushes": 1,
            "deliveries": 2, "events": 3,
        }  # fmt: skip
        link = urlsplit(done["download_url"])
        downloaded = await api.get(f"{link.path}?{link.query}")  # no API key: the link is it
        assert downloaded.status_code == 200, downloaded.text
        assert downloaded.headers["content-type"] == "application/gzip"
        assert hashlib.sha256(downloaded.content).hexdigest() == done["sha256"]
        assert len(downloaded.content) == done["size_bytes"]

        found = members(downloaded.content)
        manifest = found["manifest"][0]
        assert (manifest["format"], manifest["schema"], manifest["mode"]) == (
            "brik-export", 1, "test",
        )  # fmt: skip
        assert manifest["project_id"] == acme.project.id
        assert manifest["counts"] == done["counts"]
        tokens = {(d["platform"], d["token"], d["live_activity_token"]) for d in found["devices"]}
        assert tokens == {("ios", IOS_TOKEN, LIVE_ACTIVITY_TOKEN), ("android", ANDROID_TOKEN, None)}
        assert [(e["key"], json.loads(e["value"])) for e in found["state"]] == [
            ("config", {"flag": True})
        ]
        assert [push["target"]["tags"] for push in found["pushes"]] == [["beta"]]
        assert {d["status"] for d in found["deliveries"]} <= {"queued", "delivered"}
        assert sorted(e["id"] for e in found["events"]) == ["ev-0", "ev-1", "ev-2"]

        # A link someone altered, or one past its time, opens nothing.
        forged = await api.get(f"{link.path}?{link.query[:-4]}beef")
        assert (forged.status_code, forged.json()["error"]["code"]) == (
            403, "download_link_invalid",
        )  # fmt: skip
        past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
        signed = PepperRing([TEST_SECRET_KEY]).current.hash(
            f"export-download:{export['id']}:{past}"
        )
        late = await api.get(link.path, params={"expires": past, "signature": signed})
        assert (late.status_code, late.json()["error"]["code"]) == (403, "download_link_expired")

        actions = await AuditEvent.filter(target_id=export["id"]).values_list("action", flat=True)
        assert sorted(actions) == ["export.created", "export.downloaded"]

        # Past its lifetime the archive is deleted and the link leads nowhere.
        later = datetime.now(UTC) + timedelta(hours=settings.export_lifetime_hours, minutes=1)
        # … and so is an archive whose export went with its project, and its scratch files.
        orphan = settings.export_dir / "exp_aaaaaaaaaaaaaaaaaaaaaaaa.tar.gz"
        orphan.write_bytes(b"left by a deleted project")
        (settings.export_dir / ".exp_aaaaaaaaaaaaaaaaaaaaaaaa.x1y2").mkdir()
        (settings.export_dir / "notes.txt").write_text("not ours")
        assert await jobs.delete_expired(settings.export_dir, later) == 1
        assert [path.name for path in settings.export_dir.iterdir()] == ["notes.txt"]
        assert (await Export.get(id=export["id"])).status == "expired"
        gone = await api.get(f"/v1/exports/{export['id']}", headers=bearer(acme.secret_key))
        assert (gone.json()["status"], gone.json()["download_url"]) == ("expired", None)
        assert (await api.get(f"{link.path}?{link.query}")).status_code == 404


async def test_exports_need_a_secret_key_with_the_export_scope(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    _, publishable = await issue_api_key(
        acme.project, name="app", kind=KeyKind.PUBLISHABLE, mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY,
    )  # fmt: skip
    _, narrow = await issue_api_key(
        acme.project, name="pushes only", kind=KeyKind.SECRET, mode=KeyMode.TEST,
        pepper=TEST_SECRET_KEY, scopes=["pushes:write"],
    )  # fmt: skip
    for key, param in ((publishable, "export"), (narrow, "export")):
        refused = await client.post("/v1/exports", headers=bearer(key))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["param"] in (param, None)
    assert not await Export.exists()
    unknown = await client.get("/v1/exports/exp_aaaaaaaaaaaaaaaaaaaaaaaa",
                               headers=bearer(acme.secret_key))  # fmt: skip
    assert unknown.status_code == 404


async def test_among_members_only_owners_may_export_the_whole_project(database: None) -> None:
    from controlplane.auth.admin import AdminPrincipal
    from controlplane.auth.member_principal import acting_member
    from controlplane.errors import PermissionDenied
    from controlplane.models import Role

    acme = await make_tenant("Acme")
    for role, person in acme.people.items():
        member = await acting_member(AdminPrincipal(person.user), acme.project.id, KeyMode.LIVE)
        if role is Role.OWNER:
            member.require("export")
        else:
            with pytest.raises(PermissionDenied):
                member.require("export")
        # Exporting or erasing one end user: from developers up (viewers only read).
        if role is Role.VIEWER:
            with pytest.raises(PermissionDenied):
                member.require("users:read")
        else:
            member.require("users:read")
            member.require("users:write")


async def test_an_archive_can_be_deleted_before_it_expires(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    settings = make_settings(export_dir=tmp_path / "exports")
    acme = await make_tenant("Acme")
    key = bearer(acme.secret_key)
    async with serving(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as api:
        await populate(api, acme)
        export = (await api.post("/v1/exports", headers=key)).json()
        early = await api.delete(f"/v1/exports/{export['id']}", headers=key)
        assert (early.status_code, early.json()["error"]["code"]) == (409, "export_in_progress")
        async with running_worker(settings):
            done = await settled(api, acme.secret_key, export["id"])
        link = urlsplit(done["download_url"])
        deleted = await api.delete(f"/v1/exports/{export['id']}", headers=key)
        assert deleted.status_code == 200, deleted.text
        assert (deleted.json()["status"], deleted.json()["download_url"]) == ("expired", None)
        assert not list(settings.export_dir.iterdir())
        assert (await api.get(f"{link.path}?{link.query}")).status_code == 404
        again = await api.delete(f"/v1/exports/{export['id']}", headers=key)
        assert again.json()["status"] == "expired"
    actions = await AuditEvent.filter(target_id=export["id"]).values_list("action", flat=True)
    assert sorted(actions) == ["export.created", "export.deleted"]
