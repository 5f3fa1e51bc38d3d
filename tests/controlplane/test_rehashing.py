"""brik-cloud rotate-secret-key: every device re-hashed under the new secret key, while apps
keep registering; and what still rests on the old key, counted so an operator knows when to
drop it."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.keys import INVITATION_TOKEN_PREFIX, SESSION_TOKEN_PREFIX, generate_secret
from controlplane.auth.peppers import PepperRing
from controlplane.crypto import KeyRing
from controlplane.models import (
    ApiKey,
    Device,
    Invitation,
    KeyKind,
    KeyMode,
    PersonalAccessToken,
    Platform,
    Project,
    Role,
    Session,
)
from controlplane.rehashing import rehash_devices, waiting_on_previous_keys
from controlplane.settings import Settings
from tests.support.processes import brik_cloud_command, clean_environment
from tests.support.secret_keys import (
    ENCRYPTION_KEY,
    NEW,
    NEW_SECRET_KEY,
    OLD,
    OLD_SECRET_KEY,
    api_at,
    bearer,
)
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

RING = PepperRing([NEW_SECRET_KEY, OLD_SECRET_KEY])
KEYRING = KeyRing([ENCRYPTION_KEY])


async def old_device(project: Project, token: str, *, keyring: KeyRing = KEYRING) -> Device:
    """A device as registration under the old secret key alone wrote it."""
    return await Device.create(
        project=project, mode=KeyMode.TEST, platform=Platform.IOS, token_hash=OLD.hash(token),
        pepper_id=OLD.current.id, token_encrypted=keyring.encrypt(token.encode()),
        token_last_four=token[-4:],
    )  # fmt: skip


async def test_every_device_moves_to_the_new_key_once(database: None) -> None:
    acme = await make_tenant("Acme", roles=())
    tokens = [secrets.token_hex(32) for _ in range(23)]
    devices = [await old_device(acme.project, token) for token in tokens]
    # One written before key ids were recorded; one already under the new key.
    await Device.filter(id=devices[0].id).update(pepper_id=None)
    await Device.filter(id=devices[1].id).update(
        token_hash=NEW.hash(tokens[1]), pepper_id=NEW.current.id
    )
    report = await rehash_devices(RING, KEYRING, batch_size=5)
    assert report.as_dict() == {"rehashed": 22, "undecryptable": [], "conflicts": []}
    for device, token in zip(devices, tokens, strict=True):
        stored = await Device.get(id=device.id)
        assert (stored.token_hash, stored.pepper_id) == (NEW.hash(token), NEW.current.id)
    again = await rehash_devices(RING, KEYRING, batch_size=5)
    assert again.rehashed == 0
    waiting = await waiting_on_previous_keys(RING)
    assert waiting["devices"].count == 0


async def test_what_cannot_be_moved_is_named_and_left_alone(database: None) -> None:
    acme = await make_tenant("Acme", roles=())
    lost = await old_device(
        acme.project, "ab" * 32, keyring=KeyRing([Fernet.generate_key().decode()])
    )
    # Two rows of one token (a rotation done out of order): the old-key one cannot move.
    twin_token = "cd" * 32
    old_twin = await old_device(acme.project, twin_token)
    new_twin = await Device.create(
        project=acme.project, mode=KeyMode.TEST, platform=Platform.IOS,
        token_hash=NEW.hash(twin_token), pepper_id=NEW.current.id,
        token_encrypted=KEYRING.encrypt(twin_token.encode()), token_last_four="cdcd",
    )  # fmt: skip
    report = await rehash_devices(RING, KEYRING)
    assert report.undecryptable == [f"devices:{lost.id}"]
    assert report.conflicts == [f"devices:{old_twin.id} holds the token of ['{new_twin.id}']"]
    assert (await Device.get(id=old_twin.id)).token_hash == OLD.hash(twin_token)
    assert (await waiting_on_previous_keys(RING))["devices"].count == 2


async def test_rehashing_while_apps_register_and_unregister_loses_nothing(
    make_settings: Callable[..., Settings], database: None
) -> None:
    acme = await make_tenant("Acme", roles=())
    _, app_key = await issue_api_key(acme.project, name="app", kind=KeyKind.PUBLISHABLE,
                                     mode=KeyMode.TEST, pepper=OLD_SECRET_KEY)  # fmt: skip
    tokens = [secrets.token_hex(32) for _ in range(120)]
    ids = {token: (await old_device(acme.project, token)).id for token in tokens}
    relaunched, signed_out = tokens[::3], tokens[1::3]
    installed = [secrets.token_hex(32) for _ in range(20)]

    async with api_at(make_settings, "promoted") as api:

        async def register(token: str) -> None:
            answer = await api.post("/v1/devices", headers=bearer(app_key),
                                    json={"token": token, "platform": "ios"})  # fmt: skip
            assert answer.status_code == 200, answer.text
            if token in ids:
                assert (answer.json()["id"], answer.json()["created"]) == (ids[token], False)

        async def unregister(token: str) -> None:
            answer = await api.post("/v1/devices/unregister", headers=bearer(app_key),
                                    json={"token": token, "platform": "ios"})  # fmt: skip
            assert answer.json() == {"object": "device", "id": ids[token], "deleted": True}

        async def apps() -> None:
            # Interleaved, a few at a time, as the pass walks the table.
            for number in range(max(len(relaunched), len(signed_out), len(installed))):
                await asyncio.gather(
                    *(register(t) for t in relaunched[number : number + 1]),
                    *(unregister(t) for t in signed_out[number : number + 1]),
                    *(register(t) for t in installed[number : number + 1]),
                )

        report, _ = await asyncio.gather(rehash_devices(RING, KEYRING, batch_size=4), apps())
    assert report.undecryptable == report.conflicts == []
    expected = (set(tokens) - set(signed_out)) | set(installed)
    rows = await Device.all()
    assert sorted(KEYRING.decrypt(row.token_encrypted).decode() for row in rows) == sorted(expected)
    for row in rows:
        token = KEYRING.decrypt(row.token_encrypted).decode()
        assert (row.token_hash, row.pepper_id) == (NEW.hash(token), NEW.current.id)
        if token in ids:
            assert row.id == ids[token]


async def test_what_waits_on_the_old_key_is_what_would_stop_working(database: None) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER,))  # its key and token: old key
    now = datetime.now(UTC)

    async def key(**changes: object) -> None:
        row, _ = await issue_api_key(acme.project, name="k", kind=KeyKind.SECRET,
                                     mode=KeyMode.LIVE, pepper=OLD_SECRET_KEY)  # fmt: skip
        await ApiKey.filter(id=row.id).update(**changes)

    await key(revoked_at=now)
    await key(expires_at=now - timedelta(hours=1))
    await key(expires_at=now + timedelta(days=3))
    for pepper, ends in ((OLD, now + timedelta(hours=2)), (OLD, now - timedelta(hours=1)),
                         (NEW, now + timedelta(days=9))):  # fmt: skip
        issued = generate_secret(SESSION_TOKEN_PREFIX, pepper.current.secret)
        await Session.create(
            user=acme.owner.user, token_hash=issued.key_hash, pepper_id=issued.pepper_id,
            method="password", expires_at=ends,
        )  # fmt: skip
    for changes in ({}, {"accepted_at": now}):
        issued = generate_secret(INVITATION_TOKEN_PREFIX, OLD_SECRET_KEY)
        await Invitation.create(organization=acme.organization, email="x@example.com",
                                role=Role.DEVELOPER, token_hash=issued.key_hash,
                                pepper_id=issued.pepper_id,
                                expires_at=now + timedelta(hours=72), **changes)  # fmt: skip
    await PersonalAccessToken.all().update(pepper_id=None)  # from before key ids were recorded
    waiting = {
        kind: rows.as_dict() for kind, rows in (await waiting_on_previous_keys(RING)).items()
    }
    assert waiting["api_keys"] == {"count": 2, "last_expires_at": "never"}  # the tenant's own
    assert waiting["personal_access_tokens"] == {"count": 1, "last_expires_at": "never"}
    assert waiting["sessions"]["count"] == 1
    assert waiting["sessions"]["last_expires_at"].startswith(
        (now + timedelta(hours=2)).date().isoformat()
    )
    assert waiting["invitations"]["count"] == 1
    assert waiting["devices"] == {"count": 0, "last_expires_at": None}


def rotate_secret_key(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*brik_cloud_command(), "rotate-secret-key", *args],
        env=clean_environment(
            BRIK_DATABASE_URL=database_url,
            BRIK_SECRET_KEY=NEW_SECRET_KEY,
            BRIK_PREVIOUS_SECRET_KEYS=OLD_SECRET_KEY,
            BRIK_ENCRYPTION_KEYS=ENCRYPTION_KEY,
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_command_rehashes_and_says_when_the_old_key_may_go(
    database_url: str, database: None
) -> None:
    acme = await make_tenant("Acme", roles=())
    device = await old_device(acme.project, "ef" * 32)
    check = rotate_secret_key(database_url, "--check")
    assert check.returncode == 1, check.stderr
    report = json.loads(check.stdout)
    assert report["current_key_id"] == NEW.current.id
    assert report["previous_key_ids"] == [OLD.current.id]
    assert "devices" not in report  # --check changes nothing
    assert report["waiting"]["devices"]["count"] == 1
    assert report["waiting"]["api_keys"]["count"] == 1
    assert report["safe_to_drop_previous_keys"] is False
    assert "BRIK_PREVIOUS_SECRET_KEYS" in check.stderr

    done = rotate_secret_key(database_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["devices"] == {
        "rehashed": 1, "undecryptable": [], "conflicts": []
    }  # fmt: skip
    assert (await Device.get(id=device.id)).token_hash == NEW.hash("ef" * 32)

    await ApiKey.all().update(revoked_at=datetime.now(UTC))  # the tenant's one key, unused
    safe = rotate_secret_key(database_url, "--check")
    assert safe.returncode == 0, safe.stderr
    assert json.loads(safe.stdout)["safe_to_drop_previous_keys"] is True
