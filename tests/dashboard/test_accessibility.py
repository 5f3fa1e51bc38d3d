"""Every page in the navigation, at a phone's width: usable, labelled, reachable by keyboard,
its text legible (WCAG AA contrast); and so are the pages of one object and those before
signing in.

The pages are the sidebar's and the top bar's links, so a page added to the navigation is
checked without being listed here.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from controlplane.models import Delivery, DeliveryStatus, Role
from tests.controlplane.test_isolation import make_victim_rows
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

# Text whose colour is too close to what is behind it: WCAG AA, 4.5:1 (3:1 for large text).
# Behind: the nearest opaque background up the tree. Charts (SVG) are drawn in the same colours.
LOW_CONTRAST = """() => {
  const rgb = (c) => { const p = (c.match(/rgba?\\(([^)]+)\\)/) || [, ""])[1].split(/[ ,\\/]+/)
    .filter(Boolean).map(Number); return p.length >= 3 ? p : null; };
  const lum = (c) => c.slice(0, 3).map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (el) => { for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor); if (c && (c[3] ?? 1) > 0.5) return c; }
    return [255, 255, 255]; };
  const low = new Set();
  const text = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (text.nextNode()) {
    const el = text.currentNode.parentElement;
    if (!text.currentNode.textContent.trim() || !el.checkVisibility()) continue;
    if (el.closest("svg")) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(behind(el))].sort((x, y) => y - x);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
    if ((a + 0.05) / (b + 0.05) < (large ? 3 : 4.5)) low.add(el.outerHTML.slice(0, 120));
  }
  return [...low];
}"""


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
            assert await page.evaluate(LOW_CONTRAST) == [], path
            await page.keyboard.press("Tab")  # the first stop skips to the content
            focused = await page.evaluate("() => document.activeElement.textContent.trim()")
            assert focused == "Skip to content", path
    finally:
        await context.close()


async def test_pages_of_one_object_and_before_signing_in_fit_a_phone_and_are_legible(
    browser: Browser, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Detail Co", roles=(Role.OWNER,))
    ids = await make_victim_rows(tenant)  # one of everything a page is about
    await Delivery.create(
        push_id=ids["push_id"], device_id=ids["device_id"], provider="apns", platform="ios",
        apns_id="0" * 36, status=DeliveryStatus.INVALID_TOKEN, reason="BadDeviceToken",
    )  # fmt: skip
    project = f"/dashboard/projects/{tenant.project.id}/test"
    pages = [
        *(f"{project}/{section}/{ids[param]}" for section, param in (
            ("devices", "device_id"), ("pushes", "push_id"), ("activities", "activity_id"),
            ("state", "key"), ("webhooks", "webhook_endpoint_id"))),
        f"/dashboard/organizations/{tenant.organization.id}/audit/{ids['audit_event_id']}",
    ]  # fmt: skip
    context = await browser.new_context(base_url=dashboard_url, viewport=PHONE, is_mobile=True)
    try:
        page = await context.new_page()
        for path in ("/dashboard/sign-in", "/dashboard/accept-invitation", "sign in", *pages):
            if path == "sign in":
                await sign_in(page, tenant.owner)
                continue
            answer = await page.goto(path)
            assert answer is not None
            assert answer.status == 200, path
            await expect(page.locator("h1")).to_have_count(1)
            overflow = await page.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} scrolls sideways on a phone by {overflow}px"
            assert await page.evaluate(UNLABELLED) == [], path
            assert await page.evaluate(LOW_CONTRAST) == [], path
    finally:
        await context.close()
