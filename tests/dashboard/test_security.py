"""The dashboard's defences: forms from other sites, the Content-Security-Policy, no CDN."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.app import create_app
from controlplane.auth.keys import INVITATION_TOKEN_PREFIX, generate_secret
from controlplane.models import (
    Activity,
    ApiKey,
    AuditEvent,
    Delivery,
    Device,
    Invitation,
    Organization,
    PersonalAccessToken,
    Project,
    Push,
    Role,
    Session,
    StateEntry,
    User,
)
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.controlplane.test_isolation import make_victim_rows
from tests.dashboard.test_isolation import NAMES, dashboard_routes, fill, sign_in
from tests.support.servers import serving
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


async def test_forms_that_start_a_session_refuse_another_site(
    dashboard_url: str, database: None
) -> None:
    # Login CSRF: evil.example's page posts its owner's email and password to the sign-in
    # form; the visitor would then set up their credentials and keys in the attacker's account.
    attacker = await make_tenant("Attacker Co", roles=(Role.OWNER,))
    issued = generate_secret(INVITATION_TOKEN_PREFIX, TEST_SECRET_KEY)
    invitation = await Invitation.create(
        organization=attacker.organization, email="new@attacker.example", role=Role.VIEWER,
        token_hash=issued.key_hash, expires_at=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    forms = {
        "/dashboard/sign-in": {
            "email": attacker.owner.user.email, "password": attacker.owner.password,
            "next": "/dashboard/",
        },
        "/dashboard/accept-invitation": {"token": issued.plaintext, "password": "p" * 16},
        "/dashboard/sign-out": {},
    }  # fmt: skip
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        async with httpx.AsyncClient(base_url=dashboard_url, headers=headers) as victim:
            for path, form in forms.items():
                answer = await victim.post(path, data=form)
                assert answer.status_code == 403, (path, answer.status_code)
                assert "Cross-site request refused" in answer.text
                assert "set-cookie" not in answer.headers
    assert not await Session.exists()
    await invitation.refresh_from_db()
    assert invitation.accepted_at is None
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        await sign_in(me, attacker.owner)  # the same forms from the dashboard itself work
        accepted = await me.post("/dashboard/accept-invitation", data=forms[
            "/dashboard/accept-invitation"])  # fmt: skip
        assert accepted.status_code == 200, accepted.text  # accepted; signed in as another
        assert (await me.post("/dashboard/sign-out")).status_code == 303


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


async def test_signing_out_ends_the_session_on_the_server_not_only_in_the_browser(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Replay Co", roles=(Role.OWNER,))
    overview = f"/dashboard/projects/{tenant.project.id}/test"
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        await sign_in(me, tenant.owner)
        stolen = me.cookies["brik_session"]  # a copy taken before signing out
        assert (await me.post("/dashboard/sign-out")).status_code == 303
    async with httpx.AsyncClient(base_url=dashboard_url, cookies={"brik_session": stolen}) as thief:
        replayed = await thief.get(overview)
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/dashboard/sign-in?next=")
    assert not await Session.filter(user=tenant.owner.user, revoked_at=None).exists()


def cookie_value(answer: httpx.Response) -> str:
    return answer.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]


async def test_behind_https_the_session_cookie_is_secure_httponly_and_same_site(
    make_settings: Callable[..., Settings], database: None
) -> None:
    tenant = await make_tenant("Tls Co", roles=(Role.OWNER,))
    app = create_app(make_settings(public_base_url="https://brik.example"))
    async with (
        serving(app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"Origin": "https://brik.example"}) as me,
    ):
        signed_in = await me.post(
            "/dashboard/sign-in",
            data={"email": tenant.owner.user.email, "password": tenant.owner.password},
        )
        # This client talks plain HTTP to the app (TLS ends in front of it), so it keeps a
        # Secure cookie to itself; a browser on https://brik.example would send it.
        me.cookies.set("brik_session", cookie_value(signed_in))
        changed = await me.post(
            "/dashboard/account/password",
            data={"current_password": tenant.owner.password, "new_password": "n" * 16,
                  "new_password_confirmation": "n" * 16},
        )  # fmt: skip
        me.cookies.set("brik_session", cookie_value(changed))
        signed_out = await me.post("/dashboard/sign-out")
    for answer in (signed_in, changed, signed_out):
        assert answer.status_code == 303, answer.text[:300]
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("brik_session=")
        for flag in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
            assert flag in cookie, (answer.request.url.path, cookie)


MARKUP = "<img src=x onerror=alert(1)>"
PAYLOAD = f"\"'>{MARKUP}</textarea></script>"  # out of an attribute, a textarea, a script


async def test_text_a_tenant_chose_is_text_on_every_page(app: Starlette, database: None) -> None:
    tenant = await make_tenant("Own Co", roles=(Role.OWNER,))
    ids = {**NAMES, **await make_victim_rows(tenant)}
    owner = tenant.owner.user
    await Organization.filter(id=tenant.organization.id).update(name=PAYLOAD)
    await Project.filter(id=tenant.project.id).update(name=PAYLOAD)
    await User.filter(id=owner.id).update(name=PAYLOAD)
    await Device.filter(id=ids["device_id"]).update(user_id=PAYLOAD, tags=[PAYLOAD])
    content = {"alert": {"title": PAYLOAD}, "data": {PAYLOAD: PAYLOAD}}
    await Push.filter(id=ids["push_id"]).update(content=content, target={"user_ids": [PAYLOAD]})
    await Delivery.create(
        push_id=ids["push_id"], device_id=ids["device_id"], provider="apns", platform="ios",
        apns_id="0" * 36, reason=PAYLOAD,
    )  # fmt: skip
    await Activity.filter(id=ids["activity_id"]).update(
        activity_type=PAYLOAD, attributes={PAYLOAD: PAYLOAD}, content_state={"eta": PAYLOAD}
    )
    await StateEntry.filter(project_id=tenant.project.id).update(value=json.dumps(PAYLOAD))
    await ApiKey.filter(id=ids["api_key_id"]).update(name=PAYLOAD)
    await PersonalAccessToken.filter(id=ids["access_token_id"]).update(name=PAYLOAD)
    await Session.filter(id=ids["session_id"]).update(user_agent=PAYLOAD, ip=PAYLOAD[:64])
    await Invitation.filter(id=ids["invitation_id"]).update(email=PAYLOAD + "@x.example")
    await AuditEvent.filter(id=ids["audit_event_id"]).update(
        actor_email=PAYLOAD, target_id=PAYLOAD[:64], user_agent=PAYLOAD, details={PAYLOAD: PAYLOAD}
    )
    pages = ["/dashboard/account"] + [
        fill(route.path, ids)
        for route in dashboard_routes(app)
        # Live event streams and CSV downloads are not pages (no HTML to escape into).
        if route.methods and "GET" in route.methods and not route.path.endswith(("/events", ".csv"))
    ]
    shown = 0
    async with (
        serving(app) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"Origin": base_url}) as client,
    ):
        await sign_in(client, tenant.owner)
        for path in pages:
            answer = await client.get(path, follow_redirects=True)
            assert answer.status_code == 200, (path, answer.status_code)
            assert MARKUP not in answer.text, path
            shown += "&lt;img src=x onerror=alert(1)&gt;" in answer.text
    assert shown == len(pages)  # every page showed some of it, as text


def test_templates_hold_no_inline_script_or_style_and_load_nothing_from_elsewhere() -> None:
    for template in (DASHBOARD / "templates").glob("*.html"):
        html = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), template.name
        assert "<style" not in html, template.name
        assert not re.search(r"\sstyle=", html), template.name
        assert not re.search(r"\son[a-z]+=", html), template.name  # onclick=…
        assert not re.search(r"(src|href)=\"(https?:)?//", html), template.name
