"""API keys in the dashboard: rolled, renamed and narrowed, and the API agrees at once; a create
or roll form sent again (a reload of the page showing the secret) makes no second key; while
Redis is unreachable the keys are still listed, and a revocation is refused on the page (every
API process must hear of it first) with nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from playwright.async_api import Page, expect

from controlplane.app import create_app
from controlplane.models import ApiKey, Role
from controlplane.settings import Settings
from tests.dashboard.conftest import sign_in
from tests.dashboard.test_isolation import sign_in as sign_in_client
from tests.support.processes import free_port
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def test_a_key_is_narrowed_renamed_and_rolled_and_the_api_follows(
    page: Page, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Keys Co", roles=(Role.OWNER,))
    key = await ApiKey.get(project=tenant.project)
    await sign_in(page, tenant.owner)
    await page.goto(f"/dashboard/projects/{tenant.project.id}/test/api-keys")
    row = page.get_by_role("row").filter(has_text="test secret")
    await row.get_by_text("Edit").click()
    await row.get_by_label("Name").fill("reporting")
    for scope in ("devices:write", "pushes:write", "state:write", "credentials:write"):
        await row.get_by_label(scope).uncheck()
    await row.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Key updated")
    await key.refresh_from_db()
    assert key.name == "reporting"
    assert "pushes:write" not in key.scopes
    assert "pushes:read" in key.scopes
    async with httpx.AsyncClient(
        base_url=dashboard_url, headers={"Authorization": f"Bearer {tenant.secret_key}"}
    ) as api:
        refused = await api.post("/v1/devices", json={"token": "ab" * 32, "platform": "ios"})
        assert refused.status_code == 403  # narrowed at once, in every API process

        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await (
            page.get_by_role("row")
            .filter(has_text="reporting")
            .get_by_role("button", name="Roll")
            .click()
        )
        await expect(page.get_by_role("status").first).to_contain_text("Rolled: reporting")
        rolled = (await page.locator("#new-secret").text_content() or "").strip()
        old = await api.get("/v1/api_key")
        assert old.status_code == 401  # the old key stopped working
        new = await api.get("/v1/api_key", headers={"Authorization": f"Bearer {rolled}"})
        assert new.status_code == 200
        assert sorted(new.json()["scopes"]) == sorted(key.scopes)  # same name and scopes


async def test_a_key_created_with_scopes_and_an_expiry_keeps_its_expiry_when_rolled(
    page: Page, database: None
) -> None:
    tenant = await make_tenant("Expiring Co", roles=(Role.OWNER,))
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test/api-keys")
    await page.get_by_role("textbox", name="Name", exact=True).fill("app")
    await page.get_by_label("Publishable (bk_pk_…)", exact=False).check()
    await page.get_by_role("checkbox", name="devices:write").last.check()
    await page.get_by_label("Expires").select_option("30d")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator("#new-secret")).to_contain_text("bk_pk_test_")
    created = await ApiKey.get(project=tenant.project, name="app", revoked_at=None)
    assert (created.scopes, created.expires_at is not None) == (["devices:write"], True)
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    row = page.get_by_role("row").filter(has_text="app").filter(has_text="bk_pk_")
    await row.get_by_role("button", name="Roll").click()
    await expect(page.get_by_role("status").first).to_contain_text("Rolled: app")
    rolled = await ApiKey.get(project=tenant.project, name="app", revoked_at=None)
    assert rolled.id != created.id
    assert (rolled.scopes, rolled.expires_at) == (created.scopes, created.expires_at)


async def test_while_redis_is_unreachable_keys_are_listed_and_revoking_one_says_why_not(
    make_settings: Callable[..., Settings], database: None
) -> None:
    tenant = await make_tenant("Outage Co", roles=(Role.OWNER,))
    key = await ApiKey.get(project=tenant.project)
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    keys_page = f"/dashboard/projects/{tenant.project.id}/test/api-keys"
    async with (
        serving(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers={"Origin": url}) as me,
    ):
        await sign_in_client(me, tenant.owner)
        listed = await me.get(keys_page)
        revoked = await me.post(f"{keys_page}/{key.id}", data={"action": "revoke"})
    # A key's latest uses wait in Redis for the worker to save them: without them, the page
    # shows what the database knows, rather than a 503 for the whole list.
    assert listed.status_code == 200, listed.text[:300]
    assert key.name in listed.text
    assert revoked.status_code == 503
    assert revoked.headers["content-type"].startswith("text/html")
    assert "nothing was changed" in revoked.text
    assert key.name in revoked.text  # the list, under the refusal
    await key.refresh_from_db()
    assert key.revoked_at is None


async def test_reloading_the_page_that_shows_a_new_key_makes_no_second_key(
    page: Page, database: None
) -> None:
    tenant = await make_tenant("Reload Co", roles=(Role.OWNER,))
    keys_page = f"/dashboard/projects/{tenant.project.id}/test/api-keys"
    await sign_in(page, tenant.owner, keys_page)
    await page.get_by_role("textbox", name="Name", exact=True).fill("deploys")
    await page.get_by_label("Expires").select_option("30d")
    await page.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#new-secret").text_content() or "").strip()
    assert secret.startswith("bk_sk_test_")
    [created] = await ApiKey.filter(project=tenant.project, name="deploys")

    # The browser posts the form again: the page says which key it made, and makes none.
    reloaded = await page.reload()
    assert reloaded is not None
    assert reloaded.request.method == "POST"
    assert reloaded.status == 200
    notice = page.get_by_role("status").filter(has_text="already sent")
    await expect(notice).to_contain_text(f"it created deploys ({created.display_prefix}…")
    await expect(notice).to_contain_text("cannot be shown again")
    assert secret not in await page.content()
    assert await ApiKey.filter(project=tenant.project, name="deploys").count() == 1

    # The form on that page is a new one: it makes a key.
    await page.get_by_role("textbox", name="Name", exact=True).fill("deploys 2")
    await page.get_by_role("button", name="Create key").click()
    await expect(page.locator("#new-secret")).to_contain_text("bk_sk_test_")
    assert await ApiKey.filter(project=tenant.project, name="deploys 2").count() == 1

    # Rolling shows a secret too; posted again, it rolls nothing more.
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    row = page.get_by_role("row").filter(has_text="deploys").filter(has_not_text="deploys 2")
    await row.get_by_role("button", name="Roll").click()
    await expect(page.get_by_role("status").first).to_contain_text("Rolled: deploys")
    await page.reload()
    await expect(page.get_by_role("status").filter(has_text="already sent")).to_contain_text(
        "it rolled deploys into deploys"
    )
    deploys = await ApiKey.filter(project=tenant.project, name="deploys")
    assert sorted(key.revoked_at is None for key in deploys) == [False, True]  # old, new
