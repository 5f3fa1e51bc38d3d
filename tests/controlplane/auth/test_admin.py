"""Personal access tokens through a rotation of the secret key, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from controlplane.auth.admin import issue_access_token
from controlplane.models import PersonalAccessToken
from controlplane.settings import Settings
from tests.support.secret_keys import NEW, OLD_SECRET_KEY, api_at, bearer
from tests.support.tenants import make_person

pytestmark = pytest.mark.database


async def test_an_access_token_from_before_the_rotation_moves_over_on_use(
    make_settings: Callable[..., Settings], database: None
) -> None:
    ada = await make_person("ada@example.com")  # her token: the old key
    row, unused = await issue_access_token(ada.user, name="ci", pepper=OLD_SECRET_KEY)
    async with api_at(make_settings, "promoted") as promoted:
        me = await promoted.get("/v1/user", headers=ada.headers)
        assert me.json()["id"] == ada.user.id
    stored = await PersonalAccessToken.get(token_hash=NEW.hash(ada.token))
    assert stored.pepper_id == NEW.current.id
    assert (await PersonalAccessToken.get(id=row.id)).pepper_id != NEW.current.id
    async with api_at(make_settings, "dropped") as dropped:
        assert (await dropped.get("/v1/user", headers=ada.headers)).status_code == 200
        refused = await dropped.get("/v1/user", headers=bearer(unused))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_access_token"
        assert "secret key this server no longer accepts" in refused.json()["error"]["message"]
        # Revoked tokens say nothing about keys: they work under none.
        await PersonalAccessToken.filter(id=row.id).update(revoked_at=stored.created_at)
        revoked = await dropped.get("/v1/user", headers=bearer(unused))
        assert revoked.json()["error"]["message"] == "The access token is not recognised."
