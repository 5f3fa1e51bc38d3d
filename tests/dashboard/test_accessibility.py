"""Every page in the navigation, at a phone's width: usable, labelled, reachable by keyboard.

The pages are the sidebar's and the top bar's links, so a page added to the navigation is
checked without being listed here.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from controlplane.models import Role
from tests.dashboard.conftest import sign_in
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

PHONE = {"width": 390, "height": 844}

# For each form control: its accessible name's source, or nothing (a control nobody can name).
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.type !== 'hidden' && !el.hidden && el.offsetParent !== null)
  .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                    || el.getAttribute('aria-labelledby')
                    || (el.tagName === 'BUTTON' && el.textContent.trim())))
  .map((el) => el.outerHTML.slice(0, 120))"""


async def test_every_page_fits_a_phone_has_one_heading_and_labels_every_control(
    browser: Browser, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Phone Co", roles=(Role.OWNER,))
    context = await browser.new_context(base_url=dashboard_url, viewport=PHONE, is_mobile=True)
    try:
        page = await context.new_page()
        await sign_in(page, tenant.owner)
        links = page.locator("nav.sidebar a, nav.account a")
        paths = {
            href
            for href in [
                await links.nth(i).get_attribute("href") for i in range(await links.count())
            ]
            if href and href.startswith("/dashboard/")
        }
        assert len(paths) >= 10, paths
        for path in sorted(paths):
            answer = await page.goto(path)
            assert answer is not None
            assert answer.status == 200, path
            await expect(page.locator("h1")).to_have_count(1)
            overflow = await page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"
            assert await page.evaluate(UNLABELLED) == [], path
            await page.keyboard.press("Tab")  # the first stop skips to the content
            focused = await page.evaluate("() => document.activeElement.textContent.trim()")
            assert focused == "Skip to content", path
    finally:
        await context.close()
