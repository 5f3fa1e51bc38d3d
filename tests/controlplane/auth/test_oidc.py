"""OpenID Connect sign-in end to end: authlib against a local provider over real sockets."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.app import create_app
from controlplane.auth.sessions import SESSION_COOKIE
from controlplane.models import AuditEvent, User
from controlplane.settings import Settings
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider
from tests.support.secret_keys import Stage, stage_settings
from tests.support.servers import bound_socket, serving
from tests.support.tenants import make_person

pytestmark = pytest.mark.database

ADA = {"email": "Ada@Example.com", "email_verified": True, "name": "Ada Lovelace"}


@asynccontextmanager
async def oidc_site(
    make_settings: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[tuple[FakeOidcProvider, httpx.AsyncClient]]:
    """The provider and our app, each on its own socket; yields the provider and a browser."""
    provider_socket, app_socket = bound_socket(), bound_socket()
    provider = FakeOidcProvider(issuer=provider_socket[1], identity=dict(ADA))
    settings = make_settings(
        public_base_url=app_socket[1],
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_provider_name="Test IdP",
        **overrides,
    )
    async with (
        serving(provider.app(), provider_socket),
        serving(create_app(settings), app_socket) as url,
        httpx.AsyncClient(base_url=url) as browser,
    ):
        yield provider, browser


async def sign_in(browser: httpx.AsyncClient, next_path: str = "/dashboard/") -> httpx.Response:
    """Follow the redirects a browser would; returns our callback's answer."""
    start = await browser.get("/v1/auth/oidc/authorize", params={"next": next_path})
    assert start.status_code == 302, start.text
    at_provider = await browser.get(start.headers["location"])
    assert at_provider.status_code == 302, at_provider.text
    return await browser.get(at_provider.headers["location"])


async def test_first_sign_in_provisions_the_verified_user_and_opens_a_session(
    make_settings: Callable[..., Settings], database: None
) -> None:
    async with oidc_site(make_settings) as (provider, browser):
        methods = (await browser.get("/v1/auth/methods")).json()
        assert methods["oidc"] == {
            "enabled": True,
            "name": "Test IdP",
            "authorize_url": "/v1/auth/oidc/authorize",
        }
        landed = await sign_in(browser, "/dashboard/projects")
        assert landed.status_code == 303, landed.text
        assert landed.headers["location"] == "/dashboard/projects"
        assert SESSION_COOKIE in browser.cookies
        me = (await browser.get("/v1/user")).json()
        assert (me["email"], me["name"], me["has_password"]) == (
            "ada@example.com",
            "Ada Lovelace",
            False,
        )
        # PKCE: a challenge at authorize, the matching verifier at the token endpoint.
        authorize = provider.authorize_requests[0]
        assert authorize["code_challenge_method"] == "S256"
        assert authorize["nonce"]
        assert provider.token_requests[0]["code_verifier"]
    user = await User.get(email="ada@example.com")
    actions = await AuditEvent.filter(actor_id=user.id).values_list("action", flat=True)
    assert sorted(actions) == ["user.created", "user.login_succeeded"]


async def test_an_existing_account_is_matched_by_email(
    make_settings: Callable[..., Settings], database: None
) -> None:
    ada = await make_person("ada@example.com")
    async with oidc_site(make_settings, oidc_allow_signup=False) as (_provider, browser):
        assert (await sign_in(browser)).status_code == 303
        assert (await browser.get("/v1/user")).json()["id"] == ada.user.id
    assert await User.all().count() == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"identity": {**ADA, "email_verified": False}}, "oidc_email_unverified"),
        ({"identity": {"email_verified": True}}, "oidc_email_unverified"),
        ({"sign_with_rogue_key": True}, "oidc_failed"),
        ({"wrong_audience": True}, "oidc_failed"),
    ],
)
async def test_unverified_or_forged_identities_are_refused(
    make_settings: Callable[..., Settings], database: None, change: dict[str, Any], code: str
) -> None:
    async with oidc_site(make_settings) as (provider, browser):
        for name, value in change.items():
            setattr(provider, name, value)
        refused = await sign_in(browser)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == code
        assert SESSION_COOKIE not in browser.cookies
    assert await User.all().count() == 0


async def test_closed_sign_up_refuses_strangers(
    make_settings: Callable[..., Settings], database: None
) -> None:
    async with oidc_site(make_settings, oidc_allow_signup=False) as (_provider, browser):
        refused = await sign_in(browser)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "signup_disabled"
    assert await User.all().count() == 0


async def test_a_callback_with_a_foreign_state_or_reused_code_is_refused(
    make_settings: Callable[..., Settings], database: None
) -> None:
    async with oidc_site(make_settings) as (_provider, browser):
        start = await browser.get("/v1/auth/oidc/authorize")
        at_provider = await browser.get(start.headers["location"])
        callback = urlsplit(at_provider.headers["location"])
        code = parse_qs(callback.query)["code"][0]
        forged = await browser.get(
            "/v1/auth/oidc/callback", params={"code": code, "state": "attacker-state"}
        )
        assert forged.status_code == 400
        assert SESSION_COOKIE not in browser.cookies
        # An attacker's browser without our state cookie cannot finish someone else's flow.
        async with httpx.AsyncClient(base_url=str(browser.base_url)) as attacker:
            stolen = await attacker.get(at_provider.headers["location"])
            assert stolen.status_code == 400


async def test_next_cannot_redirect_off_site(
    make_settings: Callable[..., Settings], database: None
) -> None:
    async with oidc_site(make_settings) as (_provider, browser):
        for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
            browser.cookies.clear()
            landed = await sign_in(browser, target)
            assert landed.headers["location"] == "/dashboard/", target


async def test_a_sign_in_begun_before_a_secret_key_rotation_finishes_after_it(
    make_settings: Callable[..., Settings], database: None
) -> None:
    """The state cookie was signed with the old key by a process that then restarted with the
    new one (the old kept as a previous key): the sign-in completes. Once the old key is gone,
    such a cookie is refused like a foreign one."""
    provider_socket, app_socket = bound_socket(), bound_socket()
    provider = FakeOidcProvider(issuer=provider_socket[1], identity=dict(ADA))
    port = urlsplit(app_socket[1]).port
    assert port is not None

    def app_at(stage: Stage) -> Starlette:
        return create_app(stage_settings(
            make_settings, stage, public_base_url=app_socket[1], oidc_issuer=provider.issuer,
            oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET,
        ))  # fmt: skip

    def same_address() -> tuple[socket.socket, str]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock, app_socket[1]

    async def begun_at(stage: Stage, browser: httpx.AsyncClient, bound: object) -> str:
        async with serving(app_at(stage), bound):  # type: ignore[arg-type]
            start = await browser.get("/v1/auth/oidc/authorize")
            assert start.status_code == 302, start.text
        at_provider = await browser.get(start.headers["location"])
        return str(at_provider.headers["location"])

    async with (
        serving(provider.app(), provider_socket),
        httpx.AsyncClient(base_url=app_socket[1]) as browser,
    ):
        callback = await begun_at("before", browser, app_socket)
        async with serving(app_at("promoted"), same_address()):
            landed = await browser.get(callback)
            assert landed.status_code == 303, landed.text
            assert (await browser.get("/v1/user")).json()["email"] == "ada@example.com"
        browser.cookies.clear()
        callback = await begun_at("before", browser, same_address())
        async with serving(app_at("dropped"), same_address()):
            refused = await browser.get(callback)
            assert refused.status_code == 400
