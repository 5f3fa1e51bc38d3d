"""Members and invitations in the dashboard, in a real browser: invite, resend, revoke, change a
role, remove; what a viewer sees, and what the server does with a form a viewer forges."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Dialog, Page, expect

from controlplane.auth.permissions import MATRIX, Permission
from controlplane.models import Invitation, Membership, Role
from tests.dashboard.conftest import screenshot, sign_in
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


def accept_confirmations(page: Page) -> None:
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)


async def test_an_admin_invites_resends_revokes_changes_a_role_and_removes_a_member(
    page: Page, database: None, tmp_path: Path
) -> None:
    acme = await make_tenant("Acme")
    members_url = f"/dashboard/organizations/{acme.organization.id}/members"
    await sign_in(page, acme.people[Role.ADMIN], members_url)
    accept_confirmations(page)
    await expect(page.get_by_role("heading", name="Members", exact=True)).to_be_visible()
    rows = page.get_by_role("table", name=f"Members of {acme.organization.name}").locator(
        "tbody tr"
    )
    await expect(rows).to_have_count(4)
    # An admin never touches an owner: no role choice, no remove button on the owner's row.
    await expect(page.get_by_label("Role of owner")).to_have_count(0)
    await expect(page.get_by_role("button", name="Remove owner")).to_have_count(0)
    await expect(page.get_by_role("button", name="Leave organization")).to_be_visible()
    # ... and cannot appoint one.
    invite_roles = await page.get_by_label("Role", exact=True).locator("option").all_inner_texts()
    assert invite_roles == ["admin", "developer", "viewer"]

    # Invite.
    await page.get_by_label("Email").fill("New.Hire@Example.com")
    await page.get_by_label("Role", exact=True).select_option("viewer")
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status")).to_contain_text("Invitation sent")
    pending = page.get_by_role("row", name="new.hire@example.com")
    await expect(pending).to_contain_text("viewer")
    first = await Invitation.get(email="new.hire@example.com")
    await screenshot(page, "members", tmp_path)

    # Resend: a new invitation, the earlier one withdrawn; still one pending row.
    await page.get_by_role("button", name="Resend to new.hire@example.com").click()
    await expect(page.get_by_role("status")).to_contain_text("sent again")
    await expect(page.get_by_role("row", name="new.hire@example.com")).to_have_count(1)
    invitations = await Invitation.filter(email="new.hire@example.com").order_by("created_at")
    assert [(i.id == first.id, i.revoked_at is not None, i.role) for i in invitations] == [
        (True, True, Role.VIEWER),
        (False, False, Role.VIEWER),
    ]

    # Revoke (after confirming).
    await page.get_by_role("button", name="Revoke invitation to new.hire@example.com").click()
    await expect(page.get_by_role("status")).to_contain_text("withdrawn")
    await expect(page.get_by_text("No pending invitation.")).to_be_visible()
    assert not await Invitation.filter(revoked_at__isnull=True).exists()

    # Change a role.
    await page.get_by_label("Role of developer").select_option("viewer")
    await page.get_by_role("button", name="Change role of developer").click()
    await expect(page.get_by_role("status")).to_contain_text("Role changed")
    developer = acme.people[Role.DEVELOPER].user
    assert (await Membership.get(user=developer)).role is Role.VIEWER
    await expect(page.get_by_label("Role of developer")).to_have_value("viewer")

    # Remove a member.
    await page.get_by_role("button", name="Remove viewer").click()
    await expect(page.get_by_role("status")).to_contain_text("Member removed")
    await expect(rows).to_have_count(3)
    assert not await Membership.filter(user=acme.people[Role.VIEWER].user).exists()


async def test_the_operations_refusals_are_shown_beside_the_field(
    page: Page, database: None
) -> None:
    acme = await make_tenant("Acme", roles=(Role.OWNER, Role.ADMIN))
    members_url = f"/dashboard/organizations/{acme.organization.id}/members"
    await sign_in(page, acme.owner, members_url)
    await page.get_by_label("Email").fill(acme.people[Role.ADMIN].user.email)
    await page.get_by_role("button", name="Send invitation").click()
    email = page.get_by_label("Email")
    await expect(email).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#email-error")).to_contain_text("is already a member")
    await expect(email).to_have_value(acme.people[Role.ADMIN].user.email)  # kept for a fix
    # The last owner cannot demote themselves: said on their row.
    accept_confirmations(page)
    await page.get_by_label("Role of owner").select_option("admin")
    await page.get_by_role("button", name="Change role of owner").click()
    await expect(page.get_by_role("alert")).to_contain_text("at least one owner")
    assert (await Membership.get(user=acme.owner.user)).role is Role.OWNER


async def test_a_viewer_sees_no_admin_buttons_and_a_forged_form_is_refused(
    page: Page, database: None
) -> None:
    acme = await make_tenant("Acme")
    members_url = f"/dashboard/organizations/{acme.organization.id}/members"
    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await sign_in(page, acme.people[Role.VIEWER], members_url)
    await expect(
        page.get_by_role("table", name=f"Members of {acme.organization.name}")
    ).to_be_visible()
    for button in ("Send invitation", "Change", "Remove", "Resend", "Revoke"):
        await expect(page.get_by_role("button", name=button)).to_have_count(0)
    await expect(page.get_by_role("combobox", name="Role of developer")).to_have_count(0)
    await expect(page.get_by_role("heading", name="Pending invitations")).to_have_count(0)
    await expect(page.get_by_role("button", name="Leave organization")).to_be_visible()
    await expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    # Nothing sticks out sideways at phone width (wide tables scroll inside their box).
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0

    # The role table is the permission matrix.
    table = page.get_by_role("table", name="What each role may do")
    headers = await table.locator("thead th").all_inner_texts()
    assert headers[1:] == [role.value for role in Role]
    for permission in Permission:
        cells = table.get_by_role("row").filter(has_text=permission.value).locator("td")
        shown = await cells.all_text_contents()
        assert shown == ["✓yes" if permission in MATRIX[r] else "—no" for r in Role], permission

    # A form the page does not offer, posted from the viewer's own browser anyway.
    developer = await Membership.get(user=acme.people[Role.DEVELOPER].user)
    for action, fields in (
        (f"{members_url}/{developer.id}", {"action": "remove"}),
        (f"{members_url}/{developer.id}", {"action": "role", "role": "admin"}),
        (members_url, {"email": "spy@example.com", "role": "admin"}),
    ):
        async with page.expect_navigation() as navigation:
            await page.evaluate(
                """([action, fields]) => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = action;
                    for (const [name, value] of Object.entries(fields)) {
                        const input = document.createElement("input");
                        input.type = "hidden"; input.name = name; input.value = value;
                        form.append(input);
                    }
                    document.body.append(form);
                    form.submit();
                }""",
                [action, fields],
            )
        response = await navigation.value
        assert response is not None
        assert response.status == 403, (action, fields)
        await expect(page.get_by_role("alert")).to_contain_text("does not allow")
    assert (await Membership.get(id=developer.id)).role is Role.DEVELOPER
    assert not await Invitation.exists()
