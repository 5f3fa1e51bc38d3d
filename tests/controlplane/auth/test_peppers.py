"""The secret-key ring, and the documented rotation of BRIK_SECRET_KEY under live traffic."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

import httpx
import pytest

from controlplane.auth.api_keys import issue_api_key
from controlplane.auth.keys import pepper_id
from controlplane.auth.peppers import PepperRing
from controlplane.auth.sessions import SESSION_COOKIE
from controlplane.crypto import KeyRing
from controlplane.models import ApiKey, Device, KeyKind, KeyMode, PersonalAccessToken, Role
from controlplane.rehashing import rehash_devices, waiting_on_previous_keys
from controlplane.settings import Settings
from tests.support.secret_keys import (
    ENCRYPTION_KEY,
    NEW,
    NEW_SECRET_KEY,
    OLD,
    OLD_SECRET_KEY,
    Stage,
    api_at,
    bearer,
)
from tests.support.tenants import PASSWORD, make_tenant

pytestmark = pytest.mark.database

# --- the ring ---------------------------------------------------------------------------------


def test_the_first_key_writes_and_every_key_finds() -> None:
    ring = PepperRing([NEW_SECRET_KEY, OLD_SECRET_KEY])
    assert ring.hash("bk_x") == NEW.hash("bk_x")
    assert ring.hashes("bk_x") == [NEW.hash("bk_x"), OLD.hash("bk_x")]
    assert ring.current.id == pepper_id(NEW_SECRET_KEY) != pepper_id(OLD_SECRET_KEY)
    assert ring.ids == {pepper_id(NEW_SECRET_KEY), pepper_id(OLD_SECRET_KEY)}
    assert ring.rotating
    assert not NEW.rotating
    # The same key twice is one key (a previous key left equal to the new one).
    assert PepperRing([NEW_SECRET_KEY, NEW_SECRET_KEY]).peppers == NEW.peppers
    # An id names a key without giving it away, in repr or anywhere.
    assert NEW_SECRET_KEY not in repr(ring) + repr(ring.current)
    assert len(ring.current.id) == 16


async def test_moving_a_row_never_undoes_what_was_saved_meanwhile(database: None) -> None:
    acme = await make_tenant("Acme", roles=())
    _, token = await issue_api_key(
        acme.project, name="k", kind=KeyKind.SECRET, mode=KeyMode.LIVE, pepper=OLD_SECRET_KEY
    )
    ring = PepperRing([NEW_SECRET_KEY, OLD_SECRET_KEY])
    read = await ApiKey.get(key_hash=OLD.hash(token))
    # Revoked by another request after this one read the row: the move keeps the revocation.
    await ApiKey.filter(id=read.id).update(revoked_at=datetime.now(UTC))
    assert await ring.move_to_current(read, "key_hash", token) is True
    stored = await ApiKey.get(id=read.id)
    assert (stored.key_hash, stored.pepper_id) == (NEW.hash(token), NEW.current.id)
    assert stored.revoked_at is not None
    # Moved back by a process that still writes with the old key (a rollout in progress):
    # a copy read before that move writes nothing.
    stale = await ApiKey.get(id=read.id)
    await ApiKey.filter(id=read.id).update(key_hash=OLD.hash(token), pepper_id=OLD.current.id)
    assert await ring.move_to_current(stale, "key_hash", token) is False
    assert (await ApiKey.get(id=read.id)).key_hash == OLD.hash(token)
    # Already under the current key: nothing to write.
    current = await ApiKey.get(id=read.id)
    assert await OLD.move_to_current(current, "key_hash", token) is False


# --- the rotation, step by step, with traffic ---------------------------------------------------


class Traffic:
    """What a tenant's apps, servers and admins keep doing while the key rotates."""

    def __init__(self, publishable: str, secret: str, access_token: str, cookie: str) -> None:
        self.publishable, self.secret, self.access_token = publishable, secret, access_token
        self.cookie = cookie
        self.tokens: list[str] = []  # every device token registered, in order
        self.failures: list[str] = []

    def _check(self, response: httpx.Response, what: str, client: httpx.AsyncClient) -> None:
        if response.status_code != 200:
            self.failures.append(
                f"{what} at {client.base_url}: {response.status_code} {response.text}"
            )

    async def one_round(self, client: httpx.AsyncClient, number: int) -> None:
        # An app installed now registers; one installed earlier registers again at launch.
        fresh = secrets.token_hex(32)
        self.tokens.append(fresh)
        for token in (fresh, self.tokens[number % len(self.tokens)]):
            registered = await client.post(
                "/v1/devices", json={"token": token, "platform": "ios", "tags": ["all"]},
                headers=bearer(self.publishable),
            )  # fmt: skip
            self._check(registered, "registration", client)
        listed = await client.get("/v1/devices", params={"limit": 1}, headers=bearer(self.secret))
        self._check(listed, "secret key", client)
        me = await client.get("/v1/user", headers=bearer(self.access_token))
        self._check(me, "access token", client)
        browsed = await client.get(
            "/v1/user", headers={"Cookie": f"{SESSION_COOKIE}={self.cookie}"}
        )
        self._check(browsed, "session", client)
        renewed = browsed.cookies.get(SESSION_COOKIE)
        if renewed:  # the browser keeps what it is sent
            self.cookie = renewed

    async def during(self, *clients: httpx.AsyncClient, rounds: int = 6) -> None:
        """``rounds`` rounds on each process at once, as a load balancer spreads them."""
        counter = itertools.count()

        async def on(client: httpx.AsyncClient) -> None:
            for _ in range(rounds):
                await self.one_round(client, next(counter))

        await asyncio.gather(*(on(client) for client in clients))
        assert not self.failures, self.failures


@pytest.mark.faults
async def test_the_documented_rotation_loses_nothing_while_traffic_flows(
    make_settings: Callable[..., Settings], database: None
) -> None:
    def api(stage: Stage) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return api_at(make_settings, stage)

    async with api("before") as before:
        acme = await make_tenant("Acme", roles=(Role.OWNER,))
        _, publishable = await issue_api_key(acme.project, name="app", kind=KeyKind.PUBLISHABLE,
                                             mode=KeyMode.TEST, pepper=OLD_SECRET_KEY)  # fmt: skip
        _, forgotten = await issue_api_key(acme.project, name="unused", kind=KeyKind.SECRET,
                                           mode=KeyMode.TEST, pepper=OLD_SECRET_KEY)  # fmt: skip
        signed_in = await before.post(
            "/v1/auth/login", json={"email": acme.owner.user.email, "password": PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        traffic = Traffic(
            publishable, acme.secret_key, acme.owner.token, signed_in.cookies[SESSION_COOKIE]
        )
        await traffic.during(before)
        # Rows written before key ids were recorded (installs older than the rotation).
        await ApiKey.all().update(pepper_id=None)
        await PersonalAccessToken.all().update(pepper_id=None)
        await Device.all().update(pepper_id=None)

        # 1. Add: the new key verifies everywhere before anything writes with it.
        async with api("added") as added:
            await traffic.during(before, added)
    async with api("added") as added:
        await traffic.during(added)
        assert not await Device.filter(pepper_id=NEW.current.id).exists()

        # 2. Promote: processes writing with either key run side by side.
        async with api("promoted") as promoted:
            await traffic.during(added, promoted)
    async with api("promoted") as promoted:
        await traffic.during(promoted)

        # 3. Re-hash the devices while apps keep registering.
        ring = PepperRing([NEW_SECRET_KEY, OLD_SECRET_KEY])
        report, _ = await asyncio.gather(
            rehash_devices(ring, KeyRing([ENCRYPTION_KEY]), batch_size=7),
            traffic.during(promoted, rounds=4),
        )
        assert report.undecryptable == report.conflicts == []
        assert report.rehashed > 0

        # 4. Wait: only what was never used since the promotion still needs the old key.
        waiting = {
            kind: rows.count for kind, rows in (await waiting_on_previous_keys(ring)).items()
        }
        assert waiting == {"api_keys": 1, "personal_access_tokens": 0, "sessions": 0,
                           "invitations": 0, "devices": 0}  # fmt: skip

        # 5. Drop the old key.
        async with api("dropped") as dropped:
            await traffic.during(promoted, dropped)
    async with api("dropped") as dropped:
        await traffic.during(dropped)
        # Every device registered along the way is one row, found by its token.
        keyring = KeyRing([ENCRYPTION_KEY])
        stored = [keyring.decrypt(row.token_encrypted).decode() for row in await Device.all()]
        assert sorted(stored) == sorted(set(traffic.tokens))
        for token in set(traffic.tokens):
            again = await dropped.post("/v1/devices", json={"token": token, "platform": "ios"},
                                       headers=bearer(publishable))  # fmt: skip
            assert again.json()["created"] is False, token
        # The key nobody used during the rotation is refused, saying why.
        refused = await dropped.get("/v1/devices", headers=bearer(forgotten))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert "secret key this server no longer accepts" in refused.json()["error"]["message"]
