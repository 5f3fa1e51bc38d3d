"""A database dump holds no usable secret: no password, key, token or session, and no mail body.

Everything below is created through the real HTTP API, then the database is dumped with
``pg_dump`` (or SQLite's iterdump in the dialect run) and searched for each secret.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable

import httpx
import pytest
from cryptography.fernet import Fernet

from controlplane.auth.sessions import SESSION_COOKIE
from controlplane.crypto import KeyRing
from controlplane.mail import LOG_SENDER
from controlplane.models import Device, KeyMode, Notification, Platform
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.apple import new_signing_key
from tests.support.databases import dump_database
from tests.support.processes import brik_cloud_command, clean_environment
from tests.support.tenants import PASSWORD, make_tenant

pytestmark = pytest.mark.database

NEW_PASSWORD = "the invitee's own passphrase"


def needles(secret: str) -> list[str]:
    """The secret and, for Brik tokens, its random part alone (no prefix to hide behind)."""
    found = [secret]
    match = re.match(r"bk_(?:(?:sk|pk)_(?:test|live)|pat|ses|inv)_(\w+)", secret)
    if match:
        found.append(match[1])
    return found


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """As under brik-cloud dev: mail goes to the log, where these tests read the links."""
    return make_settings(mail_sender=LOG_SENDER)


async def test_a_database_dump_contains_no_plaintext_secret(
    client: httpx.AsyncClient,
    settings: Settings,
    database_url: str,
    database: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    acme = await make_tenant("Acme")
    secrets_seen = [PASSWORD, NEW_PASSWORD, acme.secret_key, acme.owner.token, TEST_SECRET_KEY]
    secrets_seen += [key.get_secret_value() for key in settings.encryption_keys]

    login = await client.post(
        "/v1/auth/login", json={"email": acme.owner.user.email, "password": PASSWORD}
    )
    assert login.status_code == 200
    secrets_seen.append(client.cookies[SESSION_COOKIE])
    key = await client.post(
        f"/v1/projects/{acme.project.id}/api_keys",
        json={"name": "server", "kind": "secret", "mode": "live"},
    )
    secrets_seen.append(key.json()["secret"])
    token = await client.post("/v1/user/access_tokens", json={"name": "ci"})
    secrets_seen.append(token.json()["token"])
    with caplog.at_level(logging.INFO, logger="brik.mail"):
        await client.post(
            f"/v1/organizations/{acme.organization.id}/invitations",
            json={"email": "new@example.com", "role": "viewer"},
        )
    invitation = re.search(r"bk_inv_\w+", caplog.text)
    assert invitation is not None
    secrets_seen.append(invitation[0])
    accepted = await client.post(
        "/v1/invitations/accept", json={"token": invitation[0], "password": NEW_PASSWORD}
    )
    assert accepted.status_code == 200

    server = {"Authorization": f"Bearer {acme.secret_key}"}
    device_token = "5e" * 32
    registered = await client.post(
        "/v1/devices",
        json={"token": device_token, "platform": "ios", "live_activity_token": "6f" * 32,
              "widget_push_token": "7d" * 32},
        headers=server,
    )  # fmt: skip
    assert registered.status_code == 200, registered.text
    secrets_seen += [device_token, "6f" * 32, "7d" * 32]
    apple_key = new_signing_key()
    uploaded = await client.put(
        "/v1/credentials/apns",
        json={"key": apple_key.pem, "key_id": apple_key.key_id, "team_id": apple_key.team_id,
              "topic": "com.example.app", "environment": "production"},
        headers=server,
    )  # fmt: skip
    assert uploaded.status_code == 200
    # The base64 body of the .p8 key, line by line.
    secrets_seen += [line for line in apple_key.pem.splitlines() if "-----" not in line]

    # A webhook endpoint's signing secret, and a Slack URL: a credential of the channel.
    slack_token = "Zq8x0SlackSecretPart4XyZ"
    hook = await client.post("/v1/webhook_endpoints", headers=server, json={
        "type": "slack", "url": f"https://hooks.slack.com/services/T01/B02/{slack_token}",
        "events": ["*"]})  # fmt: skip
    assert hook.status_code == 201, hook.text
    rotated = await client.post(f"/v1/webhook_endpoints/{hook.json()['id']}/rotate_secret",
                                json={"overlap_hours": 24}, headers=server)  # fmt: skip
    secrets_seen += [slack_token, hook.json()["secret"], rotated.json()["secret"]]

    dump = dump_database(database_url)
    assert acme.owner.user.email in dump  # the dump is real and has the data …
    assert "bk_sk_live_" in dump  # … including key display prefixes
    for secret in secrets_seen:
        for needle in needles(secret):
            assert needle not in dump, f"plaintext secret in the database: {needle[:12]}…"


async def test_rotate_keys_reencrypts_everything_under_the_newest_key(
    database_url: str, database: None
) -> None:
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old_ring = KeyRing([old_key])
    for number in range(3):
        await Notification.create(
            kind="invitation",
            recipient=f"{number}@example.com",
            subject="s",
            body_encrypted=old_ring.encrypt(f"body {number}".encode()),
            sender="log",
            status="sent",
        )
    acme = await make_tenant("Acme")
    device = await Device.create(
        project=acme.project, mode=KeyMode.LIVE, platform=Platform.IOS, token_hash="d" * 64,
        token_encrypted=old_ring.encrypt(b"device token"), token_last_four="oken",
        widget_push_token_encrypted=old_ring.encrypt(b"widget token"),
    )  # fmt: skip

    def rotate(*keys: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*brik_cloud_command(), "rotate-keys"],
            env=clean_environment(
                BRIK_DATABASE_URL=database_url, BRIK_ENCRYPTION_KEYS=",".join(keys)
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # Without the old key nothing can be opened: refused loudly, nothing changed.
    blind = rotate(new_key)
    assert blind.returncode != 0
    assert "undecryptable" in blind.stdout
    assert "could not be decrypted" in blind.stderr
    done = rotate(new_key, old_key)
    assert done.returncode == 0, done.stderr
    assert '"rotated": 5' in done.stdout
    new_only = KeyRing([new_key])
    bodies = sorted(
        new_only.decrypt(row.body_encrypted).decode() for row in await Notification.all()
    )
    assert bodies == ["body 0", "body 1", "body 2"]
    await device.refresh_from_db()
    assert new_only.decrypt(device.token_encrypted) == b"device token"
    assert device.widget_push_token_encrypted is not None
    assert new_only.decrypt(device.widget_push_token_encrypted) == b"widget token"
    again = rotate(new_key, old_key)
    assert '"rotated": 0' in again.stdout
    # The five, and the device's two empty token columns (no Live Activity, no push-to-start).
    assert '"already_current": 7' in again.stdout
