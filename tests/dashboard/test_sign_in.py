"""Signing in and out of the dashboard, in a real browser."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from controlplane.models import Role
from tests.dashboard.conftest import sign_in
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
