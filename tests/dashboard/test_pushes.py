"""The composer, a push's page and the history, as an admin and as a viewer would use them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis

from controlplane.core.keyspace import events_channel
from controlplane.models import Delivery, DeliveryStatus, Push, PushStatus, Role
from tests.dashboard.conftest import sign_in
from tests.dashboard.test_isolation import sign_in as sign_in_client
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database

IPHONE = "cd" * 32


async def register(dashboard_url: str, secret_key: str, **device: str) -> str:
    """Register ``device`` through the API, as an app would; its id."""
    async with httpx.AsyncClient(
        base_url=dashboard_url, headers={"Authorization": f"Bearer {secret_key}"}
    ) as api:
        answer = await api.post("/v1/devices", json=device)
        assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


async def test_a_scheduled_push_is_listed_and_canceled(
    page: Page, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Schedule Co", roles=(Role.OWNER,))
    await register(dashboard_url, tenant.secret_key, token=IPHONE, platform="ios", user_id="bo")
    await sign_in(page, tenant.owner)
    test = f"/dashboard/projects/{tenant.project.id}/test"
    await page.goto(f"{test}/compose")
    await page.get_by_label("User ids").fill("bo")
    await page.get_by_label("Title", exact=True).fill("Flash sale tomorrow")
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    await page.get_by_label("Send at").fill(later)
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_url("**/pushes/psh_*")
    await expect(page.locator('[data-field="status"]')).to_have_text("scheduled")
    push_id = page.url.rsplit("/", 1)[1].split("?")[0]

    await page.goto(f"{test}/pushes?status=scheduled")
    await page.get_by_role("link", name=push_id).click()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Cancel scheduled push").click()
    await expect(page.get_by_role("status")).to_contain_text("canceled")
    await expect(page.locator('[data-field="status"]')).to_have_text("canceled")
    assert (await Push.get(id=push_id)).status is PushStatus.CANCELED
    await page.goto(f"{test}/pushes?status=scheduled")
    await expect(page.get_by_role("link", name=push_id)).to_have_count(0)


async def test_a_refused_push_shows_the_apis_reason_beside_the_form_and_keeps_the_fields(
    page: Page, database: None
) -> None:
    tenant = await make_tenant("Refused Co", roles=(Role.OWNER,))
    await sign_in(page, tenant.owner)
    await page.goto(f"/dashboard/projects/{tenant.project.id}/test/compose")
    await page.get_by_label("Title", exact=True).fill("Nobody to send to")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("alert")).to_contain_text("device_ids, user_ids or tags")
    await expect(page.get_by_label("Title", exact=True)).to_have_value("Nobody to send to")
    await page.get_by_label("Custom data").fill("{not json")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("alert")).to_contain_text("data: not valid JSON")
    assert await Push.filter(project_id=tenant.project.id).count() == 0


async def test_a_viewer_previews_but_cannot_send_and_the_server_refuses_the_form(
    page: Page, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Viewer Co", roles=(Role.OWNER, Role.VIEWER))
    await register(dashboard_url, tenant.secret_key, token=IPHONE, platform="ios", user_id="cy")
    await sign_in(page, tenant.people[Role.VIEWER])
    test = f"/dashboard/projects/{tenant.project.id}/test"
    await page.goto(f"{test}/compose")
    await expect(page.get_by_role("button", name="Send")).to_have_count(0)
    await page.get_by_label("Title", exact=True).fill("Hello")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("region", name="APNs preview")).to_contain_text('"Hello"')
    # The form posted anyway (as a crafted request would) is refused by the operation.
    answer = await page.request.post(
        f"{test}/compose",
        form={"kind": "alert", "alert.title": "Hello", "to.user_ids": "cy", "action": "send"},
        headers={"Origin": dashboard_url},
    )
    assert answer.status == 403
    assert "pushes:write" in await answer.text()
    assert await Push.filter(project_id=tenant.project.id).count() == 0
    for section, button in (("devices", None), ("api-keys", "Create key"),
                            ("credentials", "Upload APNs key")):  # fmt: skip
        await page.goto(f"{test}/{section}")
        if button:
            await expect(page.get_by_role("button", name=button)).to_have_count(0)


async def test_reading_and_sending_work_with_javascript_off(
    browser: Browser, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("NoScript Co", roles=(Role.OWNER,))
    await register(dashboard_url, tenant.secret_key, token=IPHONE, platform="ios", user_id="di")
    context = await browser.new_context(base_url=dashboard_url, java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, tenant.owner)
        test = f"/dashboard/projects/{tenant.project.id}/test"
        await page.goto(f"{test}/compose")
        await page.get_by_label("User ids").fill("di")
        await page.get_by_label("Title", exact=True).fill("No script needed")
        await page.get_by_role("button", name="Send").click()
        await page.wait_for_url("**/pushes/psh_*")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Push")
        await expect(page.get_by_text("Recipients", exact=True)).to_be_visible()
        await page.goto(f"{test}/devices")
        await expect(page.get_by_role("table")).to_contain_text("di")
        # The switcher's Go button stands in for the script's auto-submit.
        await page.get_by_role("button", name="Go").click()
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
    finally:
        await context.close()


async def test_a_composer_form_sent_twice_sends_one_push(
    page: Page, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Twice Co", roles=(Role.OWNER,))
    await register(dashboard_url, tenant.secret_key, token=IPHONE, platform="ios", user_id="ed")
    await sign_in(page, tenant.owner)
    compose = f"/dashboard/projects/{tenant.project.id}/test/compose"
    await page.goto(compose)
    key = await page.locator('input[name="idempotency_key"]').input_value()
    form = {"idempotency_key": key, "kind": "alert", "alert.title": "Once",
            "to.user_ids": "ed", "action": "send"}  # fmt: skip
    headers = {"Origin": dashboard_url}
    first = await page.request.post(compose, form=form, headers=headers, max_redirects=0)
    again = await page.request.post(compose, form=form, headers=headers, max_redirects=0)
    assert first.status == again.status == 303
    assert first.headers["location"].split("?")[0] == again.headers["location"].split("?")[0]
    assert await Push.filter(project_id=tenant.project.id).count() == 1


async def test_a_live_activity_update_and_a_widget_reload_go_to_the_devices_named_by_id(
    page: Page, dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Courier Co", roles=(Role.OWNER,))
    phones = {}
    for name, tokens in (("both", {"live_activity_token": "a1" * 32,
                                   "widget_push_token": "b1" * 32}),
                         ("activity", {"live_activity_token": "a2" * 32}),
                         ("elsewhere", {"live_activity_token": "a3" * 32})):  # fmt: skip
        phones[name] = await register(
            dashboard_url, tenant.secret_key, token=f"{len(phones):02x}" * 32, platform="ios",
            user_id="ann", **tokens,
        )  # fmt: skip
    named = [phones["both"], phones["activity"]]
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test/compose")

    # A Live Activity update: what APNs receives, then sent to two devices named by id.
    await page.get_by_label("Live Activity").check()
    await page.get_by_label("Device ids").fill("\n".join(named))
    await page.get_by_label("Event").select_option("update")
    await page.get_by_label("Content state").fill('{"eta": "12 min", "stop": 3}')
    await page.get_by_label("Title", exact=True).fill("Courier nearby")
    await page.get_by_role("button", name="Preview").click()
    apns = page.get_by_role("region", name="APNs preview")
    await expect(apns).to_contain_text('"event": "update"')
    await expect(apns).to_contain_text('"eta": "12 min"')
    await expect(apns).to_contain_text('"title": "Courier nearby"')
    await expect(page.get_by_label("Device ids")).to_have_value("\n".join(named))  # kept
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_url("**/pushes/psh_*")
    await expect(page.get_by_role("term").filter(has_text="Kind").locator("+ dd")).to_have_text(
        "liveactivity"
    )
    deliveries = page.get_by_role("table").locator("tbody tr")
    await expect(deliveries).to_have_count(2)
    for device_id in named:
        await expect(deliveries.filter(has_text=device_id)).to_have_count(1)
    activity = await Push.get(id=page.url.rsplit("/", 1)[1].split("?")[0])
    assert activity.kind == "liveactivity"
    assert activity.target == {"device_ids": named, "user_ids": [], "tags": []}
    assert activity.content["live_activity"]["content_state"] == {"eta": "12 min", "stop": 3}

    # A widget reload to the same two: only the one with a widget push token gets it.
    await page.goto(f"/dashboard/projects/{tenant.project.id}/test/compose")
    await page.get_by_label("Widget reload").check()
    await page.get_by_label("Device ids").fill(", ".join(named))
    await page.get_by_label("Widget kind").fill("OrderWidget")
    await page.get_by_role("button", name="Send").click()
    await page.wait_for_url("**/pushes/psh_*")
    await expect(page.get_by_role("status")).to_contain_text(
        "some iOS devices have no widget push token and were skipped"
    )
    await expect(deliveries).to_have_count(1)
    await expect(deliveries).to_contain_text(phones["both"])
    widget = await Push.get(id=page.url.rsplit("/", 1)[1].split("?")[0])
    assert (widget.kind, widget.content["widget"]) == ("widget", {"kind": "OrderWidget"})
    assert widget.target == {"device_ids": named, "user_ids": [], "tags": []}
    assert await Push.filter(project_id=tenant.project.id).count() == 2


async def test_a_push_page_says_only_the_apis_own_warnings_whatever_its_link_says(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Phish Co", roles=(Role.OWNER,))
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        await sign_in_client(me, tenant.owner)
        composed = await me.post(
            f"/dashboard/projects/{tenant.project.id}/test/compose",
            data={"kind": "alert", "alert.title": "Hello", "to.user_ids": "nobody"},
        )
        assert composed.status_code == 303
        link = composed.headers["location"]
        assert link.endswith("?warning=no_recipients")
        # Someone sends a member the push's link with words of their own in it.
        lure = "Your account is suspended: call +1 555 0100 with your API key"
        answer = await me.get(link + "&" + urlencode({"warning": lure}))
    assert answer.status_code == 200
    assert "no device can receive this push" in answer.text
    assert "suspended" not in answer.text


async def test_the_live_status_follows_a_push_whose_data_has_keys_with_quotes(
    page: Page, dashboard_url: str, redis_url: str, database: None
) -> None:
    tenant = await make_tenant("Quote Co", roles=(Role.OWNER,))
    await register(dashboard_url, tenant.secret_key, token=IPHONE, platform="ios", user_id="bo")
    async with httpx.AsyncClient(
        base_url=dashboard_url, headers={"Authorization": f"Bearer {tenant.secret_key}"}
    ) as api:
        sent = await api.post(
            "/v1/pushes",
            json={"kind": "background", "data": {'say "hi"]': 1}, "to": {"user_ids": ["bo"]}},
        )
        assert sent.status_code == 202, sent.text
    push_id = sent.json()["id"]
    await sign_in(
        page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test/pushes/{push_id}"
    )
    status = page.locator('[data-field="status"]')
    await expect(status).to_have_text("queued")
    # No worker here: move the push on and tell its stream, as a worker would.
    await Push.filter(id=push_id).update(status=PushStatus.SENDING)
    redis = Redis.from_url(redis_url)
    await redis.publish(events_channel(push_id), "changed")
    await redis.aclose()
    # The page's script took the event whole (the page fixture fails on any script error).
    await expect(status).to_have_text("sending")


async def test_a_send_time_with_its_own_offset_is_kept_and_the_fields_own_is_read_as_utc(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Offset Co", roles=(Role.OWNER,))
    compose = f"/dashboard/projects/{tenant.project.id}/test/compose"
    form = {"kind": "alert", "alert.title": "Later", "to.user_ids": "bo"}
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        await sign_in_client(me, tenant.owner)
        for send_at in ("2031-01-01T09:00", "2031-01-01T09:00:00+05:00"):
            sent = await me.post(compose, data={**form, "send_at": send_at})
            assert sent.status_code == 303, sent.text[:300]
        refused = await me.post(compose, data={**form, "send_at": "tomorrow"})
    assert refused.status_code == 400
    assert 'id="send_at-error"' in refused.text  # the API's refusal, beside the field
    moments = sorted(push.send_at for push in await Push.all() if push.send_at is not None)
    # The browser's datetime-local field is UTC here (the page says so); an explicit offset
    # is what it says, not five hours later.
    assert [moment.isoformat() for moment in moments] == [
        "2031-01-01T04:00:00+00:00",
        "2031-01-01T09:00:00+00:00",
    ]


async def test_the_preview_says_a_push_is_over_4_kb_and_sending_it_is_refused(
    page: Page, database: None
) -> None:
    tenant = await make_tenant("Heavy Co", roles=(Role.OWNER,))
    await sign_in(page, tenant.owner, f"/dashboard/projects/{tenant.project.id}/test/compose")
    await page.get_by_label("Background (data only)").check()
    await page.get_by_label("User ids").fill("bo")
    await page.get_by_label("Custom data").fill('{"blob": "' + "x" * 4100 + '"}')
    await page.get_by_role("button", name="Preview").click()
    for provider in ("APNs", "FCM"):
        preview = page.get_by_role("region", name=f"{provider} preview")
        await expect(preview).to_contain_text("of 4,096 bytes")
        await expect(preview).to_contain_text("too large")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("alert")).to_contain_text("the limit is 4096")
    assert await Push.filter(project_id=tenant.project.id).count() == 0


async def test_history_filters_by_kind_status_and_date_and_counts_move_live(
    page: Page, dashboard_url: str, redis_url: str, database: None
) -> None:
    tenant = await make_tenant("Dated Co", roles=(Role.OWNER,))
    await register(dashboard_url, tenant.secret_key, token=IPHONE, platform="ios", user_id="bo")
    async with httpx.AsyncClient(
        base_url=dashboard_url, headers={"Authorization": f"Bearer {tenant.secret_key}"}
    ) as api:
        sent = [
            (await api.post("/v1/pushes", json={"kind": kind, "to": {"user_ids": ["bo"]},
                                                **content})).json()["id"]
            for kind, content in (("alert", {"alert": {"title": "Hi"}}), ("background", {}))
        ]  # fmt: skip
    alert, background = sent
    await Push.filter(id=alert).update(created_at=datetime(2030, 1, 5, 12, tzinfo=UTC))
    history = f"/dashboard/projects/{tenant.project.id}/test/pushes"
    await sign_in(page, tenant.owner, history)
    rows = page.get_by_role("row")
    await expect(rows).to_have_count(3)
    await page.get_by_label("Kind").select_option("background")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    await expect(page.get_by_role("link", name=background)).to_be_visible()
    await page.get_by_label("Kind").select_option("")
    await page.get_by_label("From (UTC)").fill("2030-01-05")
    await page.get_by_label("Before").fill("2030-01-06")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    await expect(page.get_by_role("link", name=alert)).to_be_visible()
    await page.get_by_label("Status").select_option("completed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("No push matches these filters")).to_be_visible()

    # The push's page: delivery counts follow the push's event stream without a reload.
    await page.goto(f"{history}/{background}")
    delivered = page.locator('[data-field="deliveries.delivered"]')
    await expect(delivered).to_have_text("0")
    await Push.filter(id=background).update(status=PushStatus.SENDING)
    await Delivery.filter(push_id=background).update(status=DeliveryStatus.DELIVERED)
    redis = Redis.from_url(redis_url)
    await redis.publish(events_channel(background), "changed")
    await redis.aclose()
    await expect(delivered).to_have_text("1")
    await expect(page.locator('[data-field="deliveries.queued"]')).to_have_text("0")
