from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from controlplane.auth.api_key_cache import EPOCH_KEY, ApiKeyCache, invalidate_cached_keys
from controlplane.auth.api_keys import KeyPrincipal, bearer_token, issue_api_key
from controlplane.auth.keys import ACCESS_TOKEN_PREFIX, generate_key, generate_secret, hash_key
from controlplane.auth.peppers import PepperRing
from controlplane.bootstrap import bootstrap
from controlplane.errors import AuthenticationFailed, PermissionDenied
from controlplane.models import ApiKey, KeyKind, KeyMode
from tests.conftest import TEST_SECRET_KEY
from tests.support.redis_server import RestartableRedis
from tests.support.secret_keys import NEW, NEW_SECRET_KEY, OLD_SECRET_KEY
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def authenticate(token: str, pepper: str, redis_url: str) -> KeyPrincipal:
    """A fresh cache: every call reads the database."""
    redis = Redis.from_url(redis_url)
    try:
        return await ApiKeyCache(redis, PepperRing([pepper])).authenticate(token)
    finally:
        await redis.aclose()


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "bk_sk_live_x"])
def test_missing_bearer_token_is_401_missing_api_key(header: str | None) -> None:
    with pytest.raises(AuthenticationFailed) as error:
        bearer_token(header)
    assert error.value.code == "missing_api_key"


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer bk_abc") == "bk_abc"


async def test_a_valid_key_resolves_to_its_project_and_scopes(
    database: None, redis_url: str
) -> None:
    result = await bootstrap(pepper=TEST_SECRET_KEY, admin_email="a@example.com")
    secret = result.keys["live_secret"]
    publishable = result.keys["test_publishable"]
    assert secret
    assert publishable
    principal = await authenticate(secret, TEST_SECRET_KEY, redis_url)
    assert (principal.project_id, principal.organization_id) == (result.project_id, result.org_id)
    assert (principal.kind, principal.mode) == (KeyKind.SECRET, KeyMode.LIVE)
    principal.require("pushes:write")
    client_key = await authenticate(publishable, TEST_SECRET_KEY, redis_url)
    client_key.require("devices:write")
    with pytest.raises(PermissionDenied) as denied:
        client_key.require("pushes:write")
    assert denied.value.param == "pushes:write"


async def test_each_rejection_says_why(database: None, redis_url: str) -> None:
    result = await bootstrap(pepper=TEST_SECRET_KEY, admin_email="a@example.com")
    secret = result.keys["live_secret"]
    assert secret

    async def code_for(token: str, pepper: str = TEST_SECRET_KEY) -> str:
        with pytest.raises(AuthenticationFailed) as error:
            await authenticate(token, pepper, redis_url)
        assert token not in error.value.message
        return error.value.code

    assert await code_for("bk_sk_live_short") == "invalid_api_key"
    # A well-formed personal access token is not an API key either.
    access_token = generate_secret(ACCESS_TOKEN_PREFIX, TEST_SECRET_KEY).plaintext
    assert await code_for(access_token) == "invalid_api_key"
    unknown = generate_key(KeyKind.SECRET, KeyMode.LIVE, TEST_SECRET_KEY).plaintext
    assert await code_for(unknown) == "invalid_api_key"
    assert await code_for(secret, pepper="another-pepper-" + "y" * 32) == "invalid_api_key"

    stored = ApiKey.filter(key_hash=hash_key(secret, TEST_SECRET_KEY))
    await stored.update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert await code_for(secret) == "api_key_expired"
    await stored.update(expires_at=None, revoked_at=datetime.now(UTC))
    assert await code_for(secret) == "api_key_revoked"


# --- rotating the secret key ----------------------------------------------------------------------


async def test_a_key_from_before_a_secret_key_rotation_works_and_moves_over_on_use(
    database: None, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = await bootstrap(pepper=OLD_SECRET_KEY, admin_email="a@example.com")
    used, unused = result.keys["live_secret"], result.keys["test_secret"]
    assert used
    assert unused
    redis = Redis.from_url(redis_url)
    try:
        # Two API processes mid-rollout: one already writes with the new key, one still with
        # the old; each verifies both.
        promoted = ApiKeyCache(redis, PepperRing([NEW_SECRET_KEY, OLD_SECRET_KEY]))
        added = ApiKeyCache(redis, PepperRing([OLD_SECRET_KEY, NEW_SECRET_KEY]))
        await added.authenticate(used)  # cached there under the old key
        epoch = await redis.get(EPOCH_KEY)
        principal = await promoted.authenticate(used)
        row = await ApiKey.get(id=principal.key_id)
        assert (row.key_hash, row.pepper_id) == (NEW.hash(used), NEW.current.id)
        # Moving a key changes nothing it may do: no process is told to forget its keys …
        assert await redis.get(EPOCH_KEY) == epoch
        assert (await added.authenticate(used)).key_id == principal.key_id
        # … but a revocation still reaches both, whichever key the row is under.
        await ApiKey.filter(id=principal.key_id).update(revoked_at=datetime.now(UTC))
        await invalidate_cached_keys(redis)
        for cache in (promoted, added):
            with pytest.raises(AuthenticationFailed) as revoked:
                await cache.authenticate(used)
            assert revoked.value.code == "api_key_revoked"
        await ApiKey.filter(id=principal.key_id).update(revoked_at=None)
        await invalidate_cached_keys(redis)

        # The old key dropped: the key used meanwhile works; the one nobody used is refused,
        # saying why, and the server log names it (never whole).
        dropped = ApiKeyCache(redis, PepperRing([NEW_SECRET_KEY]))
        assert (await dropped.authenticate(used)).key_id == principal.key_id
        with (
            caplog.at_level(logging.WARNING, "brik.api_keys"),
            pytest.raises(AuthenticationFailed) as refused,
        ):
            await dropped.authenticate(unused)
        assert refused.value.code == "invalid_api_key"
        assert "secret key this server no longer accepts" in refused.value.message
        [logged] = [r.getMessage() for r in caplog.records if r.name == "brik.api_keys"]
        assert unused[:15] in logged
        assert unused not in logged
        # A key that never existed gets the plain answer.
        stranger = generate_key(KeyKind.SECRET, KeyMode.LIVE, NEW_SECRET_KEY).plaintext
        with pytest.raises(AuthenticationFailed) as unknown:
            await dropped.authenticate(stranger)
        assert unknown.value.message == "The API key is not recognised."
    finally:
        await redis.aclose()


async def test_a_stream_s_key_turns_invalid_when_revoked_and_stays_valid_through_an_outage(
    database: None, tmp_path: Path
) -> None:
    """``still_valid`` (asked at every realtime heartbeat): a revocation ends the stream; Redis
    going away does not end every stream."""
    acme = await make_tenant("Acme", roles=())
    revoked_row, revoked = await issue_api_key(acme.project, name="old app",
                                               kind=KeyKind.PUBLISHABLE, mode=KeyMode.TEST,
                                               pepper=TEST_SECRET_KEY)  # fmt: skip
    _, kept = await issue_api_key(acme.project, name="app", kind=KeyKind.PUBLISHABLE,
                                  mode=KeyMode.TEST, pepper=TEST_SECRET_KEY)  # fmt: skip
    clock = [0.0]
    with RestartableRedis(tmp_path / "redis") as server:
        redis = Redis.from_url(server.url)
        try:
            cache = ApiKeyCache(redis, PepperRing([TEST_SECRET_KEY]), clock=lambda: clock[0])
            assert await cache.still_valid(revoked)
            assert await cache.still_valid(kept)
            await ApiKey.filter(id=revoked_row.id).update(revoked_at=datetime.now(UTC))
            await invalidate_cached_keys(redis)
            clock[0] += 2
            assert not await cache.still_valid(revoked)
            assert await cache.still_valid(kept)
            server.kill()
            clock[0] += 2
            assert await cache.still_valid(kept)  # unknown while Redis is away: not ended
        finally:
            await redis.aclose()
