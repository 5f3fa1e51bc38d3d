"""Signing in and out of the dashboard, in a real browser."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from controlplane.app import create_app
from controlplane.models import Role
from controlplane.settings import Settings
from tests.dashboard.conftest import sign_in
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider
from tests.support.servers import bound_socket, serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_a_member_signs_in_lands_on_their_project_and_signs_out(
    page: Page, database: None
) -> None:
    tenant = await make_tenant("Signin Co", roles=(Role.OWNER,))
    await sign_in(page, tenant.owner)
    assert page.url.endswith(f"/dashboard/projects/{tenant.project.id}/test")
    await expect(page.locator(".test-banner")).to_contain_text("Test data")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("You are signed out")
    await page.goto(f"/dashboard/projects/{tenant.project.id}/test")
    assert "/dashboard/sign-in" in page.url


async def test_a_wrong_password_is_refused_with_the_apis_message(
    page: Page, database: None
) -> None:
    tenant = await make_tenant("Wrongpass Co", roles=(Role.OWNER,))
    await page.goto("/dashboard/sign-in")
    await page.get_by_label("Email").fill(tenant.owner.user.email)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Invalid email or password")


async def test_sign_in_with_the_configured_oidc_provider_lands_where_the_visitor_was_going(
    browser: Browser, make_settings: Callable[..., Settings], database: None
) -> None:
    tenant = await make_tenant("Oidc Co", roles=(Role.OWNER,))
    provider_socket, app_socket = bound_socket(), bound_socket()
    provider = FakeOidcProvider(
        issuer=provider_socket[1],
        identity={"email": tenant.owner.user.email, "email_verified": True, "name": "Owner"},
    )
    settings = make_settings(
        public_base_url=app_socket[1], oidc_issuer=provider.issuer, oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET, oidc_provider_name="Acme SSO",
    )  # fmt: skip
    async with (
        serving(provider.app(), provider_socket),
        serving(create_app(settings), app_socket) as url,
    ):
        context = await browser.new_context(base_url=url)
        try:
            page = await context.new_page()
            api_keys = f"/dashboard/projects/{tenant.project.id}/test/api-keys"
            await page.goto(api_keys)  # not signed in: sent to sign in, keeping the way back
            await page.get_by_role("link", name="Sign in with Acme SSO").click()
            await page.wait_for_url(f"**{api_keys}")
            await expect(page.get_by_role("heading", level=1)).to_contain_text("API keys")
        finally:
            await context.close()


async def test_too_many_wrong_passwords_lock_the_account_and_the_page_says_for_how_long(
    page: Page, database: None
) -> None:
    tenant = await make_tenant("Lockout Co", roles=(Role.OWNER,))
    for _ in range(12):
        await page.goto("/dashboard/sign-in")
        await page.get_by_label("Email").fill(tenant.owner.user.email)
        await page.get_by_label("Password").fill("guessing")
        await page.get_by_role("button", name="Sign in").click()
        alert = await page.get_by_role("alert").text_content() or ""
        if "Invalid email or password" not in alert:
            break
    assert re.search(r"Too many failed sign-ins; try again in \d+ seconds", alert), alert
    # Even the right password is refused while locked.
    await page.get_by_label("Password").fill(tenant.owner.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    assert "/sign-in" in page.url


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",  # a browser reads "\" as "/"
        "/\t/evil.example/",  # and drops tabs and newlines
        "/\n/evil.example/",
        "https://evil.example/",
        "https:evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
async def test_signing_in_never_leads_to_another_site(
    dashboard_url: str, database: None, target: str
) -> None:
    tenant = await make_tenant("Redirect Co", roles=(Role.OWNER,))
    async with httpx.AsyncClient(base_url=dashboard_url) as browser:
        form = await browser.get("/dashboard/sign-in", params={"next": target})
        assert 'name="next" value="/dashboard/"' in form.text
        signed_in = await browser.post(
            "/dashboard/sign-in",
            data={"email": tenant.owner.user.email, "password": tenant.owner.password,
                  "next": target},
        )  # fmt: skip
        assert signed_in.headers["location"] == "/dashboard/"
        again = await browser.get("/dashboard/sign-in", params={"next": target})
        assert again.headers["location"] == "/dashboard/"  # already signed in: straight there


async def test_a_form_sent_after_the_session_ended_leads_back_to_its_page_after_signing_in(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Expired Co", roles=(Role.OWNER,))
    devices = f"/dashboard/projects/{tenant.project.id}/test/devices"
    delete = f"{devices}/dev_{'a' * 24}/delete"  # a form's address: it takes no GET
    async with httpx.AsyncClient(base_url=dashboard_url) as browser:
        sent = await browser.post(
            delete, data={"x": "1"}, headers={"Referer": dashboard_url + devices}
        )
        assert sent.status_code == 303
        assert sent.headers["location"] == f"/dashboard/sign-in?next={devices}"
        elsewhere = await browser.post(delete, data={"x": "1"},
                                       headers={"Referer": "https://evil.example/"})  # fmt: skip
        assert elsewhere.headers["location"] == "/dashboard/sign-in?next=/dashboard/"
        signed_in = await browser.post(
            "/dashboard/sign-in",
            data={"email": tenant.owner.user.email, "password": tenant.owner.password,
                  "next": devices},
        )  # fmt: skip
        assert signed_in.headers["location"] == devices
        assert (await browser.get(devices)).status_code == 200
