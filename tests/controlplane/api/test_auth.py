"""Password sign-in, sessions, sign-out, throttling and the CSRF guard, over real HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.app import create_app
from controlplane.auth.sessions import SESSION_COOKIE
from controlplane.models import AuditEvent, Session
from controlplane.settings import Settings
from tests.support.processes import free_port
from tests.support.servers import serving
from tests.support.tenants import PASSWORD, make_person

pytestmark = pytest.mark.database


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def as_cookie(client: httpx.AsyncClient, cookie: str) -> httpx.Response:
    """GET /v1/user from a fresh browser holding only ``cookie``."""
    async with httpx.AsyncClient(
        base_url=str(client.base_url), cookies={SESSION_COOKIE: cookie}
    ) as browser:
        return await browser.get("/v1/user")


async def test_sign_in_sets_a_hardened_cookie_that_opens_the_management_api(
    client: httpx.AsyncClient, database: None
) -> None:
    person = await make_person("ada@example.com")
    response = await login(client, "  Ada@Example.com ")
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "ada@example.com"
    set_cookie = response.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in set_cookie
    assert "SameSite=lax" in set_cookie
    assert "Path=/" in set_cookie
    me = await client.get("/v1/user")
    assert me.status_code == 200
    assert me.json()["id"] == person.user.id
    events = await AuditEvent.filter(action="user.login_succeeded").values_list(
        "actor_id", flat=True
    )
    assert events == [person.user.id]


async def test_wrong_password_and_unknown_email_get_the_same_answer(
    client: httpx.AsyncClient, database: None
) -> None:
    await make_person("ada@example.com")
    wrong = await login(client, "ada@example.com", "not the password")
    unknown = await login(client, "nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    assert "set-cookie" not in wrong.headers
    assert (await client.get("/v1/user")).status_code == 401
    failures = await AuditEvent.filter(action="user.login_failed").values_list(
        "actor_email", flat=True
    )
    assert sorted(failures) == ["ada@example.com", "nobody@example.com"]


async def test_an_account_is_locked_after_repeated_failures_even_for_the_right_password(
    make_settings: Callable[..., Settings], database: None
) -> None:
    await make_person("ada@example.com")
    app = create_app(make_settings(login_max_failures_per_account=3))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(3):
            assert (await login(client, "ada@example.com", "guess")).status_code == 401
        locked = await login(client, "ada@example.com")
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "too_many_login_attempts"
        assert 0 < int(locked.headers["retry-after"]) <= 900
        # Another account from the same IP is not locked by it.
        await make_person("bob@example.com")
        assert (await login(client, "bob@example.com")).status_code == 200


async def test_one_ip_is_throttled_across_accounts(
    make_settings: Callable[..., Settings], database: None
) -> None:
    app = create_app(make_settings(login_max_failures_per_ip=4))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for number in range(4):
            assert (await login(client, f"user{number}@example.com", "guess")).status_code == 401
        await make_person("ada@example.com")
        assert (await login(client, "ada@example.com")).status_code == 429


def guesses(client: httpx.AsyncClient, emails: list[str]) -> list[asyncio.Task[httpx.Response]]:
    """A wrong password for each of ``emails``, all sent at once."""
    return [asyncio.create_task(login(client, email, "a wrong guess")) for email in emails]


async def first_refusal(tasks: list[asyncio.Task[httpx.Response]]) -> None:
    """Wait until one of ``tasks`` is answered 429 (or all are answered)."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if any(task.result().status_code == 429 for task in done):
            return


async def test_guesses_sent_at_once_are_counted_before_any_is_evaluated(
    make_settings: Callable[..., Settings], database: None
) -> None:
    # Each attempt takes its place in the count before argon2 runs, so 24 guesses sent
    # together are not 24 evaluations (they were: 24 x 401, and the right password got in).
    await make_person("ada@example.com")
    app = create_app(make_settings(login_max_failures_per_account=5))
    limits = httpx.Limits(max_connections=50)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, limits=limits) as client:
        sent = guesses(client, ["ada@example.com"] * 24)
        await first_refusal(sent)
        right = await login(client, "ada@example.com")  # the account is locked now
        answers = await asyncio.gather(*sent)
    assert Counter(answer.status_code for answer in answers) == {401: 5, 429: 19}
    assert right.status_code == 429
    assert right.json()["error"]["code"] == "too_many_login_attempts"
    assert 0 < int(right.headers["retry-after"]) <= 900
    assert await AuditEvent.filter(action="user.login_failed").count() == 25


async def test_guesses_sent_at_once_from_one_ip_are_capped_too(
    make_settings: Callable[..., Settings], database: None
) -> None:
    app = create_app(make_settings(login_max_failures_per_ip=6))
    limits = httpx.Limits(max_connections=50)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, limits=limits) as client:
        sent = guesses(client, [f"user{number}@example.com" for number in range(20)])
        answers = await asyncio.gather(*sent)
    assert Counter(answer.status_code for answer in answers) == {401: 6, 429: 14}


async def test_a_successful_sign_in_gives_its_place_back(
    make_settings: Callable[..., Settings], database: None
) -> None:
    await make_person("ada@example.com")
    app = create_app(make_settings(login_max_failures_per_account=2, login_max_failures_per_ip=3))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await login(client, "ada@example.com", "guess")).status_code == 401
        for _ in range(3):  # neither the account nor the IP fills up with good sign-ins
            assert (await login(client, "ada@example.com")).status_code == 200
        assert (await login(client, "ada@example.com", "guess")).status_code == 401
        assert (await login(client, "ada@example.com")).status_code == 200


async def test_sign_in_keeps_its_limits_while_redis_is_unreachable(
    make_settings: Callable[..., Settings], database: None
) -> None:
    # Each process counts in memory instead: no 500, and no unlimited guessing either.
    await make_person("ada@example.com")
    await make_person("bob@example.com")
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", login_max_failures_per_account=3
    )
    async with serving(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        answers = await asyncio.gather(*guesses(client, ["ada@example.com"] * 6))
        assert Counter(answer.status_code for answer in answers) == {401: 3, 429: 3}
        locked = await login(client, "ada@example.com")
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "too_many_login_attempts"
        signed_in = await login(client, "bob@example.com")
        assert signed_in.status_code == 200, signed_in.text
        assert (await client.get("/v1/user")).json()["email"] == "bob@example.com"


async def test_sign_out_revokes_the_session_server_side(
    client: httpx.AsyncClient, database: None
) -> None:
    await make_person("ada@example.com")
    await login(client, "ada@example.com")
    cookie = client.cookies[SESSION_COOKIE]
    out = await client.post("/v1/auth/logout")
    assert out.status_code == 200
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    # Replaying the old cookie (a stolen copy) no longer works.
    replay = await as_cookie(client, cookie)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "session_expired"
    assert await Session.filter(revoked_at__isnull=True).count() == 0


async def test_a_password_change_ends_every_session_and_renews_this_one(
    app: Starlette, client: httpx.AsyncClient, database: None
) -> None:
    await make_person("ada@example.com")
    async with httpx.AsyncClient(base_url=str(client.base_url)) as other_browser:
        await login(other_browser, "ada@example.com")
        await login(client, "ada@example.com")
        old_cookie = client.cookies[SESSION_COOKIE]
        wrong = await client.post(
            "/v1/user/password",
            json={"current_password": "nope", "new_password": "a brand new passphrase"},
        )
        assert wrong.status_code == 400
        assert wrong.json()["error"]["param"] == "current_password"
        changed = await client.post(
            "/v1/user/password",
            json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        )
        assert changed.status_code == 200, changed.text
        assert client.cookies[SESSION_COOKIE] != old_cookie
        assert (await client.get("/v1/user")).status_code == 200
        assert (await other_browser.get("/v1/user")).status_code == 401
        stale = await as_cookie(client, old_cookie)
        assert stale.status_code == 401
    client.cookies.clear()
    assert (await login(client, "ada@example.com")).status_code == 401
    assert (await login(client, "ada@example.com", "a brand new passphrase")).status_code == 200


async def test_forged_and_tampered_cookies_are_refused(
    client: httpx.AsyncClient, database: None
) -> None:
    await make_person("ada@example.com")
    await login(client, "ada@example.com")
    cookie = client.cookies[SESSION_COOKIE]
    token, _, signature = cookie.partition(".")
    for forged in (f"{token}.{'0' * len(signature)}", token, "garbage", f"{token}x.{signature}"):
        response = await as_cookie(client, forged)
        assert response.status_code == 401, forged


async def test_cookie_requests_from_another_site_cannot_change_anything(
    client: httpx.AsyncClient, database: None
) -> None:
    await make_person("ada@example.com")
    await login(client, "ada@example.com")
    evil = {"Origin": "https://evil.example"}
    refused = await client.post("/v1/organizations", json={"name": "Mine now"}, headers=evil)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "cross_site_request"
    cross = await client.post(
        "/v1/organizations", json={"name": "Mine"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    # Reading is harmless (the browser would not let the other site see the answer).
    assert (await client.get("/v1/organizations", headers=evil)).status_code == 200
    same = await client.post(
        "/v1/organizations", json={"name": "Ours"}, headers={"Origin": str(client.base_url)}
    )
    assert same.status_code == 201


async def test_login_methods_say_only_password_when_oidc_is_not_configured(
    client: httpx.AsyncClient, database: None
) -> None:
    methods = (await client.get("/v1/auth/methods")).json()
    assert methods["password"] is True
    assert methods["oidc"]["enabled"] is False
    missing = await client.get("/v1/auth/oidc/authorize")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "oidc_not_configured"
