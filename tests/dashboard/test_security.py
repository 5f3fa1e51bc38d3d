"""The dashboard's defences: forms from other sites, the Content-Security-Policy, no CDN."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from controlplane.models import ApiKey, Role
from tests.dashboard.test_isolation import sign_in
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

DASHBOARD = Path(__file__).resolve().parents[2] / "controlplane" / "dashboard"


async def test_a_form_posted_from_another_site_is_refused_and_changes_nothing(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Csrf Co", roles=(Role.OWNER,))
    key = await ApiKey.get(project=tenant.project)
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        await sign_in(me, tenant.owner)
        revoke = f"/dashboard/projects/{tenant.project.id}/test/api-keys/{key.id}"
        # The browser sends the session cookie along with a form on evil.example's page.
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            answer = await me.post(revoke, data={"action": "revoke"}, headers=headers)
            assert answer.status_code == 403
            assert "Cross-site request refused" in answer.text
        await key.refresh_from_db()
        assert key.revoked_at is None
        answer = await me.post(revoke, data={"action": "revoke"})  # from the dashboard itself
        assert answer.status_code == 303
        await key.refresh_from_db()
        assert key.revoked_at is not None


async def test_every_page_carries_a_strict_policy_and_is_never_framed_or_cached(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Policy Co", roles=(Role.OWNER,))
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        sign_in_page = await me.get("/dashboard/sign-in")
        await sign_in(me, tenant.owner)
        overview = await me.get(f"/dashboard/projects/{tenant.project.id}/test")
        missing = await me.get(f"/dashboard/projects/{tenant.project.id}/test/pushes/psh_nope")
    for answer in (sign_in_page, overview, missing):
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        assert "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404


def test_templates_hold_no_inline_script_or_style_and_load_nothing_from_elsewhere() -> None:
    for template in (DASHBOARD / "templates").glob("*.html"):
        html = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), template.name
        assert "<style" not in html, template.name
        assert not re.search(r"\sstyle=", html), template.name
        assert not re.search(r"\son[a-z]+=", html), template.name  # onclick=…
        assert not re.search(r"(src|href)=\"(https?:)?//", html), template.name
