"""Events are written with the change they tell of — in its transaction, so a change rolled back
leaves none — for the endpoints that want them, in the change's mode (``billing.*`` live)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tortoise.transactions import in_transaction

from controlplane import audit
from controlplane.activities import sweep
from controlplane.app import create_app
from controlplane.billing import SubscriptionState, change_plan, mirror_subscription
from controlplane.models import (
    Activity,
    ActivityStatus,
    KeyMode,
    Organization,
    Plan,
    PlanSource,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from controlplane.settings import Settings
from controlplane.webhook_events import check_filters, outbox, wants
from tests.support.servers import serving
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database


async def endpoint(tenant: Tenant, events: list[str], mode: KeyMode = KeyMode.TEST,
                   enabled: bool = True) -> WebhookEndpoint:  # fmt: skip
    return await WebhookEndpoint.create(
        project=tenant.project, mode=mode, url_encrypted="-", url_display="https://x.example",
        events=events, secret_encrypted="-", enabled=enabled,
    )  # fmt: skip


async def told(endpoint_row: WebhookEndpoint) -> list[tuple[str, dict[str, object]]]:
    """(type, data) of every event written for ``endpoint_row``, oldest first."""
    rows = (
        await WebhookDelivery.filter(endpoint=endpoint_row)
        .order_by("event_id")
        .values_list("event__type", "event__data")
    )
    return [(str(kind), data) for kind, data in rows]


def test_filters_name_types_families_or_everything() -> None:
    assert check_filters(["billing.*", "push.completed", "billing.*"]) == [
        "billing.*", "push.completed",
    ]  # fmt: skip
    assert wants(["billing.*"], "billing.plan_changed")
    assert wants(["*"], "device.invalidated")
    assert not wants(["push.completed"], "delivery.failed")
    assert not wants(["billing.*"], "push.completed")


async def test_a_plan_change_is_told_to_live_endpoints_and_never_when_rolled_back(
    database: None,
) -> None:
    acme = await make_tenant("Acme")
    live = await endpoint(acme, ["billing.*"], KeyMode.LIVE)
    test = await endpoint(acme, ["*"], KeyMode.TEST)
    uninterested = await endpoint(acme, ["push.completed"], KeyMode.LIVE)
    stopped = await endpoint(acme, ["*"], KeyMode.LIVE, enabled=False)
    admin = audit.Actor("cli", None)
    async with in_transaction():
        await change_plan(acme.organization, Plan.PRO, PlanSource.ADMIN, admin, None)
    ((kind, data),) = await told(live)
    assert kind == "billing.plan_changed"
    assert data == {"object": "organization", "id": acme.organization.id, "plan": "pro",
                    "previous_plan": "free", "source": "admin"}  # fmt: skip
    for unmoved in (test, uninterested, stopped):
        assert await told(unmoved) == []
    delivery = await WebhookDelivery.get(endpoint=live)
    assert (delivery.status, delivery.mode) == (WebhookDeliveryStatus.QUEUED, KeyMode.LIVE)

    organization = await Organization.get(id=acme.organization.id)

    async def fails_after_the_change() -> None:
        async with in_transaction():
            await change_plan(organization, Plan.ENTERPRISE, PlanSource.ADMIN, admin, None)
            raise RuntimeError("the change fails after the event was written")

    with pytest.raises(RuntimeError):
        await fails_after_the_change()
    assert (await Organization.get(id=acme.organization.id)).plan is Plan.PRO
    assert len(await told(live)) == 1  # no event for the change that did not happen


async def test_a_push_to_nobody_and_crossing_a_quota_threshold_are_told(
    make_settings: Callable[..., Settings], database: None
) -> None:
    acme = await make_tenant("Acme")
    hooks = await endpoint(acme, ["push.completed", "usage.threshold"])
    auth = {"Authorization": f"Bearer {acme.secret_key}"}
    app = create_app(make_settings(plan_free_pushes_per_month=5))
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as api:
        nobody = await api.post("/v1/pushes", headers=auth, json={
            "to": {"user_ids": ["nobody"]}, "kind": "alert", "alert": {"title": "Hi"}})  # fmt: skip
        assert nobody.json()["status"] == "completed"
        for number in range(4):
            await api.post("/v1/devices", headers=auth, json={
                "token": f"{number + 1:064x}", "platform": "ios", "user_id": "u_1"})  # fmt: skip
        sent = await api.post("/v1/pushes", headers=auth, json={
            "to": {"user_ids": ["u_1"]}, "kind": "alert", "alert": {"title": "Hi"}})  # fmt: skip
        assert sent.status_code == 202, sent.text
    events = await told(hooks)
    assert [kind for kind, _ in events] == ["push.completed", "usage.threshold"]
    completed = events[0][1]
    assert (completed["id"], completed["recipients"], completed["deliveries"]) == (
        nobody.json()["id"], 0, {},
    )  # fmt: skip
    threshold = events[1][1]
    assert (threshold["percent"], threshold["used"], threshold["quota"], threshold["mode"]) == (
        80, 4, 5, "test",
    )  # fmt: skip
    assert (await WebhookEvent.get(type="push.completed")).ordering_key == nobody.json()["id"]


async def test_an_activity_ended_by_the_server_or_apples_limit_is_told(
    client: httpx.AsyncClient, database: None
) -> None:
    acme = await make_tenant("Acme")
    hooks = await endpoint(acme, ["activity.ended"])
    now = datetime.now(UTC)
    ours, expired = [
        await Activity.create(
            project=acme.project, mode=KeyMode.TEST, activity_type="OrderTracking",
            attributes={}, content_state={"eta": 5}, status=ActivityStatus.ACTIVE,
            started_by="server", last_timestamp=1, user_id="u_1",
        )
        for _ in range(2)
    ]  # fmt: skip
    ended = await client.post(f"/v1/activities/{ours.id}/end", json={"content_state": {"eta": 0}},
                              headers={"Authorization": f"Bearer {acme.secret_key}"})  # fmt: skip
    assert ended.status_code == 200, ended.text
    await Activity.filter(id=expired.id).update(created_at=now - timedelta(hours=9))
    await sweep(now)
    events = await told(hooks)
    assert [(data["id"], data["end_reason"]) for _, data in events] == [
        (ours.id, "ended"), (expired.id, "apple_limit"),
    ]  # fmt: skip
    assert events[0][1]["content_state"] == {"eta": 0}
    await sweep(now)  # already ended: told once
    assert len(await told(hooks)) == 2


async def test_an_outbox_writes_nothing_nobody_wants(database: None) -> None:
    acme = await make_tenant("Acme")
    await endpoint(acme, ["billing.*"])
    box = await outbox(acme.project.id, KeyMode.TEST)
    assert not box.wants("device.invalidated")
    assert await box.emit("device.invalidated", {"object": "device"}) == 0
    assert not await WebhookEvent.exists()


async def test_a_subscription_mirrored_from_stripe_is_told_when_it_changes(
    make_settings: Callable[..., Settings], database: None
) -> None:
    settings = make_settings(stripe_pro_price_ids=["price_pro"])
    acme = await make_tenant("Acme")
    await Organization.filter(id=acme.organization.id).update(stripe_customer_id="cus_acme")
    hooks = await endpoint(acme, ["billing.subscription_changed"], KeyMode.LIVE)
    now = datetime.now(UTC)

    def state(status: str, cancel: bool = False) -> SubscriptionState:
        return SubscriptionState(
            id="sub_1", customer_id="cus_acme", status=status, price_id="price_pro",
            current_period_start=now, current_period_end=now + timedelta(days=30),
            cancel_at_period_end=cancel, canceled_at=None,
        )  # fmt: skip

    for moment in (state("active"), state("active"), state("past_due"), state("past_due", True)):
        async with in_transaction():
            await mirror_subscription(moment, settings, now, None)
    changes = [(d["status"], d["previous_status"], d["cancel_at_period_end"])
               for _, d in await told(hooks)]  # fmt: skip
    # A late or repeated Stripe event that changes nothing is not told again.
    assert changes == [("active", None, False), ("past_due", "active", False),
                       ("past_due", "past_due", True)]  # fmt: skip
