"""Dashboard sessions through a rotation of the secret key: a signed-in browser stays signed in,
its cookie signed anew and its session re-hashed on its next request, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from controlplane.auth.sessions import SESSION_COOKIE
from controlplane.models import Session
from controlplane.settings import Settings
from tests.support.secret_keys import NEW, api_at
from tests.support.tenants import PASSWORD, make_person

pytestmark = pytest.mark.database


async def sign_in(client: httpx.AsyncClient, email: str) -> str:
    response = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.cookies[SESSION_COOKIE]


def holding(cookie: str) -> dict[str, str]:
    """Headers of a browser holding only this session cookie."""
    return {"Cookie": f"{SESSION_COOKIE}={cookie}"}


async def test_a_session_from_before_the_rotation_moves_over_on_its_next_request(
    make_settings: Callable[..., Settings], database: None
) -> None:
    person = await make_person("ada@example.com")
    async with api_at(make_settings, "before") as before:
        browser = await sign_in(before, "ada@example.com")
        idle = await sign_in(before, "ada@example.com")  # a tab nobody opens again
        leaving = await sign_in(before, "ada@example.com")

    async with api_at(make_settings, "promoted") as promoted:
        me = await promoted.get("/v1/user", headers=holding(browser))
        assert me.json()["id"] == person.user.id
        renewed = me.cookies[SESSION_COOKIE]
        assert renewed != browser
        assert renewed.partition(".")[0] == browser.partition(".")[0]  # the same session
        assert "HttpOnly" in me.headers["set-cookie"]
        moved = await Session.get(token_hash=NEW.hash(browser.partition(".")[0]))
        assert moved.pepper_id == NEW.current.id
        # Whatever the request: a dashboard page renews the cookie too.
        page = await promoted.get("/dashboard/", headers=holding(browser))
        assert page.status_code == 200
        assert page.cookies[SESSION_COOKIE] == renewed
        # Signed with the current key, nothing to renew.
        assert (
            "set-cookie" not in (await promoted.get("/v1/user", headers=holding(renewed))).headers
        )
        # Signing out clears the cookie, and nothing sets it again.
        out = await promoted.post("/v1/auth/logout", headers=holding(leaving))
        [cleared] = out.headers.get_list("set-cookie")
        assert cleared.startswith(f'{SESSION_COOKIE}=""')

    async with api_at(make_settings, "dropped") as dropped:
        assert (await dropped.get("/v1/user", headers=holding(renewed))).status_code == 200
        for stale in (browser, idle):
            refused = await dropped.get("/v1/user", headers=holding(stale))
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "session_expired"
