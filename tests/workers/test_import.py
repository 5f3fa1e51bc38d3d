"""A project moves from one instance to another, and its phones get pushes from the new one.

Instance A is this test's own API and worker (in process, on the session database), with live
keys and APNs / FCM credentials pointing at the local fakes. Its export is built by its worker
and downloaded by the signed link. Instance B is another database with its own secret key and
encryption key ring, run as real ``brik-cloud`` processes: ``migrate``, ``bootstrap``,
``import`` (twice: the second adds nothing), then ``serve`` and ``worker``. A push sent on B
to the user of the moved devices goes through B's real pipeline to the same fakes, which
receive it at the same device tokens.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from controlplane.settings import Settings
from tests.controlplane.api.test_exports import settled
from tests.support.apple import SigningKey
from tests.support.databases import (
    configured_server_url,
    create_postgres_database,
    drop_postgres_database,
)
from tests.support.google import new_service_account
from tests.support.processes import (
    brik_cloud_command,
    free_port,
    running_command,
    settings_environment,
)
from tests.workers.test_deliver import bearer, until_final
from tests.workers.test_deliver_activities import fake_settings, live_project
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM

pytestmark = pytest.mark.database

IPHONE = "5e" * 32
PIXEL = "moving-pixel-" + "m" * 40
USER = "moving-user"


@pytest.fixture
async def second_database(tmp_path: Path) -> AsyncIterator[str]:
    """Instance B's database: another on the same server (a file of its own for SQLite)."""
    server = configured_server_url()
    if server.startswith("sqlite"):
        yield f"sqlite://{tmp_path / 'instance-b.sqlite3'}"
        return
    url = await create_postgres_database(server)
    try:
        yield url
    finally:
        await drop_postgres_database(server, url)


def brik_cloud(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*brik_cloud_command(), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_project_moves_to_another_instance_and_its_devices_get_pushes_there(
    pipeline: Callable[..., Any], apns_fake: FakeAPNs, fcm_fake: FakeFCM,
    signing_key: SigningKey, make_settings: Callable[..., Settings], second_database: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Instance A: devices, state and a push delivered, then an export.
    fakes = fake_settings(apns_fake, fcm_fake)
    client = await pipeline(**fakes, export_dir=tmp_path / "a-exports")
    app = await live_project(client, signing_key, fcm_fake)
    for device in ({"token": IPHONE, "platform": "ios", "user_id": USER},
                   {"token": PIXEL, "platform": "android", "user_id": USER}):  # fmt: skip
        registered = await client.post("/v1/devices", json=device, headers=bearer(app.secret))
        assert registered.status_code == 200, registered.text
    written = await client.put("/v1/state/user:moving-user:plan", json={"value": "gold"},
                               headers=bearer(app.secret))  # fmt: skip
    assert written.status_code in (200, 201), written.text
    sent = await client.post("/v1/pushes", headers=bearer(app.secret), json={
        "kind": "alert", "alert": {"title": "From A"}, "to": {"user_ids": [USER]}})  # fmt: skip
    from_a = await until_final(client, app.secret, sent.json()["id"])
    asked = await client.post("/v1/exports", headers=bearer(app.secret))
    assert asked.status_code == 202, asked.text
    done = await settled(client, app.secret, asked.json()["id"])
    assert done["status"] == "succeeded", done
    assert (done["mode"], done["counts"]["devices"]) == ("live", 2)
    path = "/v1/" + done["download_url"].split("/v1/", 1)[1]
    archive = tmp_path / "moved.tar.gz"
    archive.write_bytes((await client.get(path)).content)

    # Instance B: another database, secret key and key ring; the archive imported by the CLI.
    settings_b = make_settings(
        **fakes, database_url=second_database, secret_key="instance-b-" + secrets.token_hex(20),
        encryption_keys=[Fernet.generate_key().decode()],
        queue_name="brik-test-b:" + secrets.token_hex(4), export_dir=tmp_path / "b-exports",
    )  # fmt: skip
    env = settings_environment(settings_b, BRIK_LOG_LEVEL="WARNING")
    brik_cloud(env, "migrate")
    ids = json.loads(brik_cloud(env, "bootstrap", "--json", "--admin-email", "b@example.com"))
    project_b, secret_b = ids["project_id"], ids["keys"]["live_secret"]
    imported = json.loads(brik_cloud(env, "import", str(archive), "--project", project_b))
    assert imported["loaded"]["devices"] == 2
    assert imported["loaded"]["state"] == 1
    assert imported["loaded"]["pushes"] == 1
    again = json.loads(brik_cloud(env, "import", str(archive), "--project", project_b))
    assert not any(again["loaded"].values()), again  # a second run adds nothing
    assert again["skipped"]["devices"] == 2

    port = free_port()
    base_b = f"http://127.0.0.1:{port}"
    worker_b = await asyncio.create_subprocess_exec(
        *brik_cloud_command(), "worker", env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with running_command("serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                             ready_url=f"{base_b}/readyz"):  # fmt: skip
            async with httpx.AsyncClient(base_url=base_b) as b:
                await upload_credentials(b, secret_b, signing_key, fcm_fake)
                moved = await b.get("/v1/devices", headers=bearer(secret_b))
                assert sorted(d["token"] for d in moved.json()["data"]) == sorted(
                    ["…" + IPHONE[-4:], "…" + PIXEL[-4:]]
                )
                history = (await b.get("/v1/pushes", headers=bearer(secret_b))).json()["data"]
                assert [(p["id"], p["status"], p["created_at"]) for p in history] == [
                    (from_a["id"], "completed", from_a["created_at"])
                ]  # A's push, as it was: history, not something to send again
                state = await b.get("/v1/state/user:moving-user:plan", headers=bearer(secret_b))
                assert state.json()["value"] == "gold"
                push = await b.post("/v1/pushes", headers=bearer(secret_b), json={
                    "kind": "alert", "alert": {"title": "From B"},
                    "to": {"user_ids": [USER]}})  # fmt: skip
                assert push.status_code == 202, push.text
                assert push.json()["recipients"] == 2
                final = await until_final(b, secret_b, push.json()["id"])
                assert final["deliveries"] == {"delivered": 2}, final
    finally:
        worker_b.terminate()
        await asyncio.wait_for(worker_b.wait(), timeout=30)
    from_b = [r for r in apns_fake.accepted() if r.payload["aps"]["alert"] == {"title": "From B"}]
    assert [r.token for r in from_b] == [IPHONE]
    to_pixel = [m for m in fcm_fake.accepted() if m.token == PIXEL]
    assert [m.message["notification"]["title"] for m in to_pixel] == ["From A", "From B"]


async def upload_credentials(
    b: httpx.AsyncClient, secret: str, signing_key: SigningKey, fcm_fake: FakeFCM
) -> None:
    """Instance B's own APNs key and FCM service account (credentials are not exported)."""
    uploaded = await b.put("/v1/credentials/apns", json={
        "key": signing_key.pem, "key_id": signing_key.key_id, "team_id": signing_key.team_id,
        "topic": "com.example.app", "environment": "sandbox"}, headers=bearer(secret))  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text
    info, public_key = new_service_account("https://oauth2.googleapis.com/token")
    fcm_fake.add_account(info["client_email"], info["project_id"], info["private_key_id"],
                         public_key)  # fmt: skip
    uploaded = await b.put("/v1/credentials/fcm", json={"service_account": info},
                           headers=bearer(secret))  # fmt: skip
    assert uploaded.status_code == 200, uploaded.text


async def test_importing_something_else_says_what_is_wrong_and_loads_nothing(
    make_settings: Callable[..., Settings], database: None, tmp_path: Path
) -> None:
    from controlplane.models import Device
    from tests.support.tenants import make_tenant

    acme = await make_tenant("Acme")
    env = settings_environment(make_settings(), BRIK_LOG_LEVEL="WARNING")
    not_an_archive = tmp_path / "notes.tar.gz"
    not_an_archive.write_text("not an archive")
    for path, project, says in (
        (not_an_archive, acme.project.id, "not a readable export archive"),
        (not_an_archive, "prj_aaaaaaaaaaaaaaaaaaaaaaaa", "no project prj_aaaaaaaaaaaaaaaaaaaaaaaa"),
    ):
        done = await asyncio.to_thread(
            subprocess.run, [*brik_cloud_command(), "import", str(path), "--project", project],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert says in done.stderr
    assert not await Device.exists()
