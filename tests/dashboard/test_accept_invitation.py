"""An invitation from the dashboard to a new member's first page, through the emailed link.

The app is served at the address its settings call public, so the link in the email is the one
a person would click; the mail is captured by the test sender (``tests/support/mail.py``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import pytest
from playwright.async_api import Browser, Page, expect

from controlplane.app import create_app
from controlplane.models import Membership, Role, User
from controlplane.settings import Settings
from tests.dashboard.conftest import browser_page, sign_in
from tests.support.mail import RecordingSender
from tests.support.servers import bound_socket, serving
from tests.support.tenants import make_person, make_tenant

pytestmark = pytest.mark.database

LINK = re.compile(r"https?://\S+/dashboard/accept-invitation#bk_inv_[0-9A-Za-z]+")


@pytest.fixture
async def dashboard_url(
    make_settings: Callable[..., Settings], database: None
) -> AsyncIterator[str]:
    """The app at the address it writes into its emails, mail captured."""
    bound = bound_socket()
    settings = make_settings(
        public_base_url=bound[1], mail_sender="tests.support.mail:RecordingSender"
    )
    RecordingSender.sent.clear()
    async with serving(create_app(settings), bound) as url:
        yield url


def emailed_link(to: str) -> str:
    [email] = [email for email in RecordingSender.sent if email.to == to]
    link = LINK.search(email.body)
    assert link is not None, email.body
    return link[0]


async def test_an_invitee_opens_the_emailed_link_sets_a_password_and_lands_in_the_organization(
    page: Page, browser: Browser, dashboard_url: str, database: None
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER, Role.ADMIN))
    members_url = f"/dashboard/organizations/{acme.organization.id}/members"
    await sign_in(page, acme.people[Role.ADMIN], members_url)
    await page.get_by_label("Email").fill("new.hire@example.com")
    await page.get_by_label("Role", exact=True).select_option("developer")
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status")).to_contain_text("Invitation sent")

    link = emailed_link("new.hire@example.com")
    assert link.startswith(f"{dashboard_url}/dashboard/accept-invitation#")
    async with browser_page(browser, dashboard_url) as invitee:
        await invitee.goto(link)
        await expect(invitee.get_by_role("heading", name="Join an organization")).to_be_visible()
        await expect(invitee.get_by_label("Invitation code")).to_have_value(link.split("#")[1])
        assert "#" not in invitee.url  # the token left the address bar
        await invitee.get_by_label("Your name").fill("New Hire")
        await invitee.get_by_label("Choose a password").fill("a long enough password")
        await invitee.get_by_role("button", name="Accept invitation").click()
        await expect(invitee.get_by_role("status")).to_contain_text("Invitation accepted")
        await expect(invitee.get_by_label("Email")).to_have_value("new.hire@example.com")
        await invitee.get_by_label("Password").fill("a long enough password")
        await invitee.get_by_role("button", name="Sign in").click()
        await invitee.wait_for_url(f"**/dashboard/organizations/{acme.organization.id}/projects")
        await expect(invitee.get_by_role("heading", name="Projects")).to_be_visible()
        await expect(invitee.get_by_role("link", name="Acme app")).to_be_visible()
        await expect(invitee.get_by_role("navigation", name="Account")).to_contain_text(
            "new.hire@example.com"
        )
        # The link works once.
        await invitee.goto(link)
        await invitee.get_by_role("button", name="Accept invitation").click()
        await expect(invitee.get_by_role("alert")).to_contain_text("already used")

    user = await User.get(email="new.hire@example.com")
    assert user.name == "New Hire"
    membership = await Membership.get(user=user, organization=acme.organization)
    assert membership.role is Role.DEVELOPER
    # The admin sees the new member, and no pending invitation.
    await page.reload()
    await expect(page.get_by_role("row", name="New Hire")).to_contain_text("developer")
    await expect(page.get_by_text("No pending invitation.")).to_be_visible()


async def test_someone_with_an_account_accepts_while_signed_in_and_goes_straight_in(
    page: Page, browser: Browser, dashboard_url: str, database: None
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER,))
    ada = await make_person("ada@example.com")
    await sign_in(page, acme.owner, f"/dashboard/organizations/{acme.organization.id}/members")
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Role", exact=True).select_option("viewer")
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status")).to_contain_text("Invitation sent")
    link = emailed_link("ada@example.com")
    async with browser_page(browser, dashboard_url) as ada_page:
        await sign_in(ada_page, ada)
        await ada_page.goto(link)
        # An existing account needs neither a name nor a password.
        await ada_page.get_by_role("button", name="Accept invitation").click()
        await ada_page.wait_for_url(f"**/dashboard/organizations/{acme.organization.id}/projects")
        await expect(ada_page.get_by_role("link", name="Acme app")).to_be_visible()
    assert (await Membership.get(user=ada.user)).role is Role.VIEWER


async def test_accepting_while_signed_in_as_someone_else_says_whom_to_sign_in_as(
    page: Page, database: None
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER,))
    await sign_in(page, acme.owner, f"/dashboard/organizations/{acme.organization.id}/members")
    await page.get_by_label("Email").fill("new.hire@example.com")
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status")).to_contain_text("Invitation sent")
    # The owner tries the link in their own browser.
    await page.goto(emailed_link("new.hire@example.com"))
    await page.get_by_label("Choose a password").fill("a long enough password")
    await page.get_by_role("button", name="Accept invitation").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "new.hire@example.com is now a developer"
    )
    await expect(page.get_by_text(f"signed in as {acme.owner.user.email}")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("You are signed out")
