"""An admin's first hour, in a real browser against real ``brik-cloud serve`` and ``worker``
processes on PostgreSQL and Redis, with APNs, FCM, Stripe (localstripe behind the fake) and an
SMTP server reached over real sockets.

The admin signs in, uploads the APNs key (file picker) and the FCM service account (pasted),
devices register through the API, the admin previews a push, sends it, and watches it reach
``completed`` on its page without reloading; then creates an API key, sees it once, revokes it,
and the API refuses it. They invite a colleague, who accepts through the link ``serve`` mailed
(over SMTP, STARTTLS and a login, as a deployment sends it); they upgrade through Stripe
Checkout and come back to the Pro plan; and they read all of it in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from controlplane.auth.api_keys import issue_api_key
from controlplane.models import KeyKind, KeyMode, Role
from tests.conftest import TEST_SECRET_KEY
from tests.dashboard.conftest import SCREENSHOTS, browser_page, screenshot, sign_in
from tests.dashboard.test_accept_invitation import LINK
from tests.support.apple import SigningKey
from tests.support.google import new_service_account
from tests.support.processes import (
    brik_cloud_command,
    free_port,
    running_command,
    server_environment,
)
from tests.support.smtp import PASSWORD, USER, MailServer, Received, mail_server
from tests.support.stripe import (
    PRO_PRICE_ID,
    STRIPE_SECRET_KEY,
    WEBHOOK_SECRET,
    eventually,
    register_webhook,
)
from tests.support.tenants import make_tenant
from workers.fakes.apns import FakeAPNs
from workers.fakes.fcm import FakeFCM
from workers.fakes.stripe import FakeStripe

pytestmark = pytest.mark.database

ROOT = Path(__file__).resolve().parents[2]
# The pictures of docs/dashboard.md this test takes (tests/dashboard/conftest.py: screenshot).
SHOTS = (
    "credentials",
    "devices",
    "compose-preview",
    "push-delivered",
    "overview",
    "api-key-created",
)
# ... and those the other pages' tests take.
ELSEWHERE = (
    "billing",  # test_billing.py, back from Checkout on Pro
    "members",  # test_members.py, an invitation pending
    "audit-log",  # test_audit.py
)

IPHONE = "ab" * 32
PIXEL = "pixel-token-" + "z" * 40


class Camera:
    def __init__(self, page: Page, tmp_path: Path) -> None:
        self.page = page
        self.tmp_path = tmp_path
        self.taken: list[str] = []

    async def shoot(self, name: str) -> None:
        assert name in SHOTS, name
        await screenshot(self.page, name, self.tmp_path)
        self.taken.append(name)


@contextlib.contextmanager
def worker_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [*brik_cloud_command(), "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=45)  # the worker's grace period (30 s) and some


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[MailServer]:
    """The SMTP server ``serve`` mails through (STARTTLS required, a login)."""
    with mail_server(tmp_path) as server:
        yield server


@pytest.fixture
async def product(
    database_url: str,
    redis_url: str,
    clean_redis: None,
    apns_fake: FakeAPNs,
    fcm_fake: FakeFCM,
    fake_stripe: FakeStripe,
    mailbox: MailServer,
) -> AsyncIterator[str]:
    """``brik-cloud serve`` and ``brik-cloud worker`` on the test database, Redis and fakes."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    await register_webhook(fake_stripe, f"{base_url}/webhooks/stripe")
    env = server_environment(
        database_url, redis_url, f"brik-test:{secrets.token_hex(4)}",
        BRIK_PUBLIC_BASE_URL=base_url,
        BRIK_APNS_HOST=apns_fake.host, BRIK_APNS_PORT=str(apns_fake.port),
        BRIK_APNS_CA_FILE=str(apns_fake.ca_file),  # type: ignore[attr-defined]
        BRIK_APNS_CHANNELS_HOST=apns_fake.host,
        BRIK_APNS_CHANNELS_PORT=str(apns_fake.management_port),
        BRIK_FCM_BASE_URL=fcm_fake.base_url, BRIK_FCM_TOKEN_URL=fcm_fake.token_url,
        BRIK_WORKER_POLL_DELAY="0.05",
        BRIK_MAIL_SENDER="smtp", BRIK_SMTP_CA_FILE=str(mailbox.ca_file),
        BRIK_SMTP_URL=f"smtp+starttls://{USER}:{quote(PASSWORD)}@127.0.0.1:{mailbox.port}",
        BRIK_STRIPE_SECRET_KEY=STRIPE_SECRET_KEY, BRIK_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        BRIK_STRIPE_API_BASE=fake_stripe.base_url, BRIK_STRIPE_PRO_PRICE_IDS=PRO_PRICE_ID,
    )  # fmt: skip
    serve = running_command(
        "serve", "--host", "127.0.0.1", "--port", str(port), env=env, ready_url=f"{base_url}/readyz"
    )  # fmt: skip
    # Starting and stopping wait, and must not block this loop meanwhile: the fakes run on it,
    # and serve stops only once its requests in flight are answered — a Stripe webhook reading
    # the subscription back from the fake, for one.
    with contextlib.ExitStack() as processes:
        await asyncio.to_thread(processes.enter_context, serve)
        processes.enter_context(worker_process(env))
        try:
            yield base_url
        finally:
            await asyncio.to_thread(processes.close)


@pytest.fixture
async def product_page(browser: Browser, product: str) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=product, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


async def test_an_admins_first_hour_from_credentials_to_a_push_a_colleague_and_pro(
    product_page: Page,
    product: str,
    browser: Browser,
    mailbox: MailServer,
    fake_stripe: FakeStripe,
    database: None,
    tmp_path: Path,
    signing_key: SigningKey,
    apns_fake: FakeAPNs,
    fcm_fake: FakeFCM,
) -> None:
    page = product_page
    camera = Camera(page, tmp_path)
    tenant = await make_tenant("Journey Co", roles=(Role.OWNER,))
    _, live_key = await issue_api_key(
        tenant.project, name="server", kind=KeyKind.SECRET, mode=KeyMode.LIVE,
        pepper=TEST_SECRET_KEY,
    )  # fmt: skip
    await sign_in(page, tenant.owner)
    live = f"/dashboard/projects/{tenant.project.id}/live"

    # Credentials: the .p8 through the file picker, the service account pasted.
    await page.goto(f"{live}/credentials")
    key_file = tmp_path / f"AuthKey_{signing_key.key_id}.p8"
    key_file.write_text(signing_key.pem)
    await page.get_by_label(".p8 key file").set_input_files(key_file)
    await page.get_by_label("Key id").fill(signing_key.key_id)
    await page.get_by_label("Team id").fill(signing_key.team_id)
    await page.get_by_label("Bundle id (topic)").fill("com.example.journey")
    await page.get_by_label("Environment").select_option("sandbox")
    await page.get_by_role("button", name="Upload APNs key").click()
    await expect(page.get_by_role("status")).to_contain_text("APNs key saved")
    account, public_key = new_service_account("https://oauth2.googleapis.com/token")
    fcm_fake.add_account(
        account["client_email"], account["project_id"], account["private_key_id"], public_key
    )
    await page.get_by_label("…or paste it").fill(json.dumps(account))
    await page.get_by_role("button", name="Upload service account").click()
    await expect(page.get_by_role("status")).to_contain_text("FCM service account saved")
    apns_section = page.get_by_role("region", name="Apple (APNs auth key)")
    await expect(apns_section).to_contain_text("com.example.journey")
    await expect(apns_section).to_contain_text("sandbox")
    await camera.shoot("credentials")

    # Devices register through the API, as apps do.
    async with httpx.AsyncClient(
        base_url=product, headers={"Authorization": f"Bearer {live_key}"}
    ) as api:
        for device in ({"token": IPHONE, "platform": "ios", "user_id": "ann"},
                       {"token": PIXEL, "platform": "android", "user_id": "ann"}):  # fmt: skip
            registered = await api.post("/v1/devices", json=device)
            assert registered.status_code == 200, registered.text
    await page.goto(f"{live}/devices?user_id=ann")
    rows = page.get_by_role("row")
    await expect(rows).to_have_count(3)  # the header and two devices
    await expect(page.get_by_role("table")).not_to_contain_text(IPHONE)  # tokens redacted
    await camera.shoot("devices")

    # Compose: preview what each provider receives, then send.
    await page.goto(f"{live}/compose")
    await page.get_by_label("User ids").fill("ann")
    await page.get_by_label("Title", exact=True).fill("Your order shipped")
    await page.get_by_label("Body", exact=True).fill("It arrives Thursday.")
    await page.get_by_role("button", name="Preview").click()
    apns_preview = page.get_by_role("region", name="APNs preview")
    await expect(apns_preview).to_contain_text('"title": "Your order shipped"')
    await expect(apns_preview).to_contain_text("of 4,096 bytes")
    await expect(page.get_by_role("region", name="FCM preview")).to_contain_text("It arrives")
    await camera.shoot("compose-preview")
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_url("**/pushes/psh_*")
    push_id = page.url.rsplit("/", 1)[1].split("?")[0]
    # The status moves to completed on the page itself (the event stream), then the page
    # shows its final deliveries.
    await expect(page.locator('[data-field="status"]')).to_have_text("completed", timeout=20_000)
    await page.wait_for_url("**final=1")
    table = page.get_by_role("table")
    await expect(table.get_by_text("delivered")).to_have_count(2)
    await expect(table).to_contain_text("apns")
    await expect(table).to_contain_text("fcm")
    assert [push.payload["aps"]["alert"]["title"] for push in apns_fake.received] == [
        "Your order shipped"
    ]
    assert len(fcm_fake.received) == 1
    await camera.shoot("push-delivered")

    # The overview counts it; the history lists it.
    await page.goto(live)
    await expect(page.get_by_role("region", name="Pushes today")).to_contain_text("1")
    await expect(page.get_by_role("region", name="Delivery success, last 24 h")).to_contain_text(
        "100.0 %"
    )
    await camera.shoot("overview")
    await page.goto(f"{live}/pushes?kind=alert")
    await expect(page.get_by_role("link", name=push_id)).to_be_visible()

    # An API key: shown once, then revoked — and the API refuses it at once.
    await page.goto(f"{live}/api-keys")
    await page.get_by_role("textbox", name="Name", exact=True).fill("ci deploys")
    await page.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#new-secret").text_content() or "").strip()
    assert secret.startswith("bk_sk_live_")
    await camera.shoot("api-key-created")
    async with httpx.AsyncClient(base_url=product) as api:
        assert (
            await api.get("/v1/api_key", headers={"Authorization": f"Bearer {secret}"})
        ).status_code == 200
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        row = page.get_by_role("row").filter(has_text="ci deploys")
        await row.get_by_role("button", name="Revoke").click()
        await expect(page.get_by_role("status")).to_contain_text("Key revoked")
        await page.reload()
        assert secret not in await page.content()  # the secret is never shown again
        refused = await api.get("/v1/api_key", headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 401

    # A colleague is invited: serve mails the link, and they join through it.
    organization = f"/dashboard/organizations/{tenant.organization.id}"
    await page.goto(f"{organization}/members")
    await page.get_by_label("Email").fill("new.hire@example.com")
    await page.get_by_label("Role", exact=True).select_option("developer")
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status")).to_contain_text("Invitation sent")

    async def invitation_mail() -> list[Received]:
        return [mail for mail in mailbox.received if mail.recipients == ["new.hire@example.com"]]

    [mail] = await eventually(invitation_mail)
    assert (mail.over_tls, mail.login) == (True, USER)
    link = LINK.search(mail.message.get_content())
    assert link is not None, mail.message
    assert link[0].startswith(f"{product}/dashboard/accept-invitation#")
    async with browser_page(browser, product) as invitee:
        await invitee.goto(link[0])
        await invitee.get_by_label("Your name").fill("New Hire")
        await invitee.get_by_label("Choose a password").fill("a long enough password")
        await invitee.get_by_role("button", name="Accept invitation").click()
        await expect(invitee.get_by_role("status")).to_contain_text("Invitation accepted")
        await invitee.get_by_label("Password").fill("a long enough password")
        await invitee.get_by_role("button", name="Sign in").click()
        await invitee.wait_for_url(f"**{organization}/projects")
        await expect(invitee.get_by_role("link", name=tenant.project.name)).to_be_visible()
    await page.reload()
    await expect(page.get_by_role("row", name="New Hire")).to_contain_text("developer")

    # Upgrade: Stripe's Checkout page, its webhook to serve, and back on the Pro plan.
    await page.goto(f"{organization}/billing")
    await expect(page.get_by_role("heading", name="Plan: Free")).to_be_visible()
    await page.get_by_role("button", name="Upgrade to Pro").click()
    await page.wait_for_url(f"{fake_stripe.base_url}/checkout/*")
    await page.get_by_role("button", name="Pay and subscribe").click()
    await page.wait_for_url(f"**{organization}/billing?checkout=success")
    await expect(page.get_by_role("status")).to_contain_text("you are on the Pro plan")
    await expect(page.get_by_role("heading", name="Plan: Pro")).to_be_visible()
    await expect(page.get_by_role("meter", name="Live pushes")).to_have_attribute("max", "100000")

    # The audit log tells all of it, newest first; filtered, and one event read in full.
    await page.goto(f"{organization}/audit")
    rows = page.get_by_role("table", name="Audit events, newest first").locator("tbody tr")
    await expect(rows.first).to_contain_text("organization.plan_changed")
    for action in ("credential.uploaded", "api_key.created", "api_key.revoked",
                   "invitation.created", "invitation.accepted", "member.added"):  # fmt: skip
        await expect(rows.filter(has_text=action)).not_to_have_count(0)
    await page.get_by_label("Action").select_option("api_key.*")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("api_key.revoked")
    await expect(rows.last).to_contain_text("api_key.created")
    await expect(rows.last).to_contain_text(tenant.owner.user.email)
    await page.get_by_role("link", name="Clear filters").click()
    await page.get_by_role("link", name="organization.plan_changed").click()
    await expect(page.get_by_role("heading", name="organization.plan_changed")).to_be_visible()
    details = page.locator("pre")
    await expect(details).to_contain_text('"plan": "pro"')
    await expect(details).to_contain_text('"previous_plan": "free"')
    await expect(details).to_contain_text('"source": "billing"')
    assert camera.taken == list(SHOTS)


def test_the_docs_show_the_screenshots_the_journey_takes() -> None:
    page = (ROOT / "docs" / "dashboard.md").read_text()
    shown = re.findall(r"\(images/dashboard/([\w-]+)\.png\)", page)
    assert sorted(shown) == sorted(SHOTS + ELSEWHERE)
    for name in SHOTS + ELSEWHERE:
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000, name
