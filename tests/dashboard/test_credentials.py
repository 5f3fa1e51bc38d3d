"""Credentials in the dashboard, in a real browser: an upload refused beside its field with the
other fields kept, the APNs key replaced (its version counts up, a new fingerprint), the FCM
service account through the file picker, and both removed."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from controlplane.models import ProviderCredential, Role
from tests.dashboard.conftest import sign_in
from tests.support.apple import new_signing_key
from tests.support.google import new_service_account
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


async def upload_apns(page: Page, pem: str, key_id: str, team_id: str) -> None:
    await page.get_by_label("…or paste the key").fill(pem)
    await page.get_by_label("Key id").fill(key_id)
    await page.get_by_label("Team id").fill(team_id)
    await page.get_by_label("Bundle id (topic)").fill("com.example.keys")
    await page.get_by_role("button", name=re.compile(r"^(Upload|Replace) APNs key$")).click()


async def test_an_owner_replaces_and_removes_credentials_and_sees_refusals_beside_the_field(
    page: Page, tmp_path: Path, database: None
) -> None:
    tenant = await make_tenant("Keys Co", roles=(Role.OWNER,))
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/live/credentials")
    apns = page.get_by_role("region", name="Apple (APNs auth key)")
    first, second = new_signing_key("AAAAAAAAAA"), new_signing_key("BBBBBBBBBB")

    await upload_apns(page, first.pem, "not an id", first.team_id)
    await expect(page.locator("#key_id-error")).to_contain_text("key_id")
    await expect(page.get_by_label("Team id")).to_have_value(first.team_id)  # kept for a fix
    await expect(apns).to_contain_text("None uploaded.")

    await upload_apns(page, first.pem, first.key_id, first.team_id)
    await expect(page.get_by_role("status")).to_contain_text("APNs key saved")
    await expect(apns.locator("dl.facts")).to_contain_text("AAAAAAAAAA")
    fingerprint = (await apns.locator("dd code").first.text_content() or "").strip()
    await upload_apns(page, second.pem, second.key_id, second.team_id)  # "Replace APNs key"
    await expect(page.get_by_role("status")).to_contain_text("APNs key saved")
    await expect(apns.locator("dl.facts")).to_contain_text("BBBBBBBBBB")
    await expect(apns.locator("dd code").first).not_to_have_text(fingerprint)
    stored = await ProviderCredential.get(project=tenant.project, provider="apns")
    assert stored.version == 2
    await expect(apns.locator("dl.facts")).to_contain_text("Version2")
    assert second.pem.splitlines()[1] not in await page.content()  # never the secret

    account, _ = new_service_account("https://oauth2.googleapis.com/token")
    account_file = tmp_path / "service-account.json"
    account_file.write_text(json.dumps(account))
    await page.get_by_label("Service account JSON file").set_input_files(account_file)
    await page.get_by_role("button", name="Upload service account").click()
    await expect(page.get_by_role("status")).to_contain_text("FCM service account saved")
    fcm = page.get_by_role("region", name="Google (FCM service account)")
    await expect(fcm).to_contain_text(account["client_email"])

    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Remove APNs key").click()
    await expect(page.get_by_role("status")).to_contain_text("APNs key removed")
    await page.get_by_role("button", name="Remove service account").click()
    await expect(page.get_by_role("status")).to_contain_text("FCM service account removed")
    await expect(apns).to_contain_text("None uploaded.")
    await expect(fcm).to_contain_text("None uploaded.")
    assert not await ProviderCredential.filter(project=tenant.project).exists()
