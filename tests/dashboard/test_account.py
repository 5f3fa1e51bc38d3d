"""The account page in a real browser: name, password, personal access tokens, sessions."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, expect

from controlplane.models import AuditEvent, User
from tests.dashboard.conftest import browser_page, sign_in
from tests.support.tenants import PASSWORD, make_person

pytestmark = pytest.mark.database

ACCOUNT = "/dashboard/account"
NEW_PASSWORD = "a brand new passphrase"
OTHER_SESSION = re.compile(r"^Sign out the session")


def accept_confirmations(page: Page) -> None:
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def test_renaming_and_changing_the_password_signs_out_only_the_other_browsers(
    page: Page, browser: Browser, dashboard_url: str, database: None
) -> None:
    ada = await make_person("ada@example.com")
    async with browser_page(browser, dashboard_url) as laptop:
        await sign_in(laptop, ada, ACCOUNT)
        await sign_in(page, ada, ACCOUNT)
        await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
        await expect(page.get_by_role("button", name=OTHER_SESSION)).to_have_count(1)

        await page.get_by_label("Name", exact=True).fill("Ada Lovelace")
        await page.get_by_role("button", name="Save name").click()
        await expect(page.get_by_role("status")).to_contain_text("Name saved")
        await expect(page.get_by_label("Name", exact=True)).to_have_value("Ada Lovelace")

        # Refusals are shown beside their field; nothing changes.
        await page.get_by_label("Current password").fill("not my password")
        await page.get_by_label("New password (at least 12 characters)").fill(NEW_PASSWORD)
        await page.get_by_label("New password, again").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Change password").click()
        await expect(page.locator("#current_password-error")).to_contain_text("not correct")
        await page.get_by_label("Current password").fill(PASSWORD)
        await page.get_by_label("New password (at least 12 characters)").fill(NEW_PASSWORD)
        await page.get_by_label("New password, again").fill(NEW_PASSWORD + "!")
        await page.get_by_role("button", name="Change password").click()
        await expect(page.locator("#new_password_confirmation-error")).to_contain_text("differ")

        await page.get_by_label("Current password").fill(PASSWORD)
        await page.get_by_label("New password (at least 12 characters)").fill(NEW_PASSWORD)
        await page.get_by_label("New password, again").fill(NEW_PASSWORD)
        await page.get_by_role("button", name="Change password").click()
        await expect(page.get_by_role("status")).to_contain_text("Password changed")
        # This browser stays signed in (a fresh session); the laptop is signed out.
        await expect(page.get_by_role("button", name=OTHER_SESSION)).to_have_count(0)
        await page.reload()
        await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
        await laptop.reload()
        assert "/dashboard/sign-in" in laptop.url
        await laptop.get_by_label("Email").fill("ada@example.com")
        await laptop.get_by_label("Password").fill(NEW_PASSWORD)
        await laptop.get_by_role("button", name="Sign in").click()
        await laptop.wait_for_url(f"**{ACCOUNT}")
    user = await User.get(id=ada.user.id)
    assert user.name == "Ada Lovelace"
    changed = await AuditEvent.get(action="user.password_changed", target_id=user.id)
    assert changed.details["sessions_ended"] == 2


async def test_a_personal_access_token_is_shown_once_copied_and_revoked(
    page: Page, dashboard_url: str, database: None
) -> None:
    ada = await make_person("ada@example.com")
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    accept_confirmations(page)
    await sign_in(page, ada, ACCOUNT)
    await page.get_by_label("Token name").fill("CI")
    await page.get_by_label("Expires").select_option("30d")
    await page.get_by_role("button", name="Create token").click()
    shown = page.locator("#new-token")
    await expect(shown).to_have_text(re.compile(r"^bk_pat_"))
    token = (await shown.text_content() or "").strip()
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == token

    async with httpx.AsyncClient(base_url=dashboard_url) as script:
        me = await script.get("/v1/user", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == "ada@example.com"
        # Shown once: the page lists it redacted from now on.
        await page.goto(ACCOUNT)
        row = page.get_by_role("row", name=re.compile(r"^CI "))
        await expect(row).to_contain_text("active")
        assert token not in await page.content()
        await row.get_by_role("button", name="Revoke CI").click()
        await expect(page.get_by_role("status")).to_contain_text("Token revoked")
        await expect(page.get_by_role("row", name=re.compile(r"^CI "))).to_contain_text("revoked")
        refused = await script.get("/v1/user", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401


async def test_sessions_are_listed_and_signed_out_from_the_account_page(
    page: Page, browser: Browser, dashboard_url: str, database: None
) -> None:
    ada = await make_person("ada@example.com")
    async with (
        browser_page(browser, dashboard_url) as laptop,
        browser_page(browser, dashboard_url) as phone,
    ):
        await sign_in(laptop, ada, ACCOUNT)
        await sign_in(phone, ada, ACCOUNT)
        await sign_in(page, ada, ACCOUNT)
        accept_confirmations(page)
        sessions = page.get_by_role("table").filter(has_text="this browser")
        await expect(sessions.locator("tbody tr")).to_have_count(3)
        await expect(sessions.get_by_text("this browser")).to_have_count(1)
        await expect(sessions).to_contain_text("127.0.0.1")
        await expect(sessions).to_contain_text("HeadlessChrome")

        await page.get_by_role("button", name=OTHER_SESSION).first.click()
        await expect(page.get_by_role("status")).to_contain_text("Session signed out")
        await expect(sessions.locator("tbody tr")).to_have_count(2)
        await page.get_by_role("button", name="Sign out every other session").click()
        await expect(page.get_by_role("status")).to_contain_text("Every other session")
        await expect(sessions.locator("tbody tr")).to_have_count(1)
        for other in (laptop, phone):
            await other.reload()
            assert "/dashboard/sign-in" in other.url
        await page.reload()
        await expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    assert await AuditEvent.filter(action="session.revoked", actor_id=ada.user.id).count() == 2
