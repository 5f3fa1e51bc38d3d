"""Browser fixtures: Debian's Chromium driven by Playwright against the dashboard over HTTP.

``dashboard_url`` serves the app (``create_app``, on the test database and Redis) on a real
socket; ``page`` is a fresh browser context per test (its own cookies), so tests never share a
session. ``signed_in`` signs a person in through the sign-in form, as they would. ``api`` is
an HTTP client to the same server, for a tenant's data made (and checked) through the API.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright
from starlette.applications import Starlette

from tests.support.servers import serving
from tests.support.tenants import Person

CHROMIUM = "/usr/bin/chromium"
# The pictures docs/dashboard.md shows, each taken by the browser test at the step it shows:
# into docs/images/dashboard/ with BRIK_UPDATE_SCREENSHOTS=1 (after changing a page), else into
# the test's own directory — taken either way, so a page that stops rendering fails there.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard"


async def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    update = os.environ.get("BRIK_UPDATE_SCREENSHOTS") == "1"
    directory = SCREENSHOTS if update else tmp_path / "screenshots"
    await page.screenshot(path=directory / f"{name}.png", full_page=True)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def dashboard_url(app: Starlette) -> AsyncIterator[str]:
    async with serving(app) as base_url:
        yield base_url


@pytest.fixture
async def api(dashboard_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to the same server, for making a tenant's data through the API (with
    the tenant's key) and checking what the API sees after the dashboard changed it."""
    async with httpx.AsyncClient(base_url=dashboard_url) as client:
        yield client


@asynccontextmanager
async def browser_page(browser: Browser, base_url: str) -> AsyncIterator[Page]:
    """A page in a fresh browser context (its own cookies: another person, another device)."""
    context = await browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(10_000)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # Pages answer forms with 4xx when they refuse them (the browser logs those as failed
    # loads); assets, scripts and streams must never fail.
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}")
            if response.status >= 400 and response.request.resource_type != "document"
            else None
        ),
    )
    try:
        yield page
    finally:
        await context.close()
    # A Content-Security-Policy violation or a script error is a bug the person would hit.
    assert not errors, errors


@pytest.fixture
async def page(browser: Browser, dashboard_url: str) -> AsyncIterator[Page]:
    async with browser_page(browser, dashboard_url) as page:
        yield page


async def sign_in(page: Page, person: Person, next_path: str = "/dashboard/") -> None:
    await page.goto(f"/dashboard/sign-in?next={next_path}")
    await page.get_by_label("Email").fill(person.user.email)
    await page.get_by_label("Password").fill(person.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/sign-in" not in url)


# The push-provider fakes (APNs over HTTP/2 with TLS, FCM), as the worker tests use them.
from tests.workers.conftest import apns_fake, fcm_fake, signing_key  # noqa: E402, F401
