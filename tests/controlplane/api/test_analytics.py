"""Analytics over real HTTP: batches kept event by event, counted once however often they are
sent, nothing half-accepted when Redis is away, and the summary, list and CSV reading back
what the loader (the worker's own code, run here in-process) put in PostgreSQL."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from controlplane.analytics.buffer import EventBuffer
from controlplane.analytics.loading import Loaded, load_pending
from controlplane.app import create_app
from controlplane.auth.api_keys import issue_api_key
from controlplane.models import (
    Activity,
    ActivityStatus,
    AnalyticsEvent,
    AnalyticsRollup,
    Delivery,
    DeliveryStatus,
    KeyKind,
    KeyMode,
    Push,
    PushStatus,
    Role,
)
from controlplane.settings import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.support.analytics import event, impression
from tests.support.servers import serving
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.database


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def load(settings: Settings) -> Loaded:
    """What a worker's load job does, in-process: drain the buffer into PostgreSQL."""
    redis = Redis.from_url(settings.redis_url)
    try:
        buffer = EventBuffer(redis, settings.analytics_buffer_max_bytes)
        return await load_pending(buffer, "test-loader", claim_idle_seconds=60)
    finally:
        await redis.aclose()


async def publishable_key(tenant: Tenant, mode: KeyMode = KeyMode.TEST) -> str:
    _, key = await issue_api_key(tenant.project, name="app", kind=KeyKind.PUBLISHABLE, mode=mode,
                                 pepper=TEST_SECRET_KEY)  # fmt: skip
    return key


async def test_a_batch_keeps_its_good_events_and_says_why_each_bad_one_was_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    app_key = await publishable_key(tenant)
    old = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    good = [
        impression(platform="ios", os_version="17.4", device_model="iPhone15,2", country="DE"),
        event("widget.click", widget="Score", action="open_match", platform="ios"),
        event("activity.start", activity_id="act_abc"),
        event("custom.checkout_started", properties={"cart": 3, "coupon": None}),
        event("error", error_message="decode failed", error_code="E42", widget="Score"),
    ]
    bad = [
        event("widget.click", widget="Score"),  # no action
        event("widget.sparkle", widget="Score"),  # not a name
        impression(timestamp=old),
        impression(timestamp=ahead),
        event("custom.tap", widget="Score"),  # a typed field on a custom event
        impression(country="Germany"),
        event("custom.big", properties={f"k{n}": n for n in range(51)}),
        {"name": "widget.impression", "widget": "Score"},  # no id, no timestamp
        impression(extra_field=1),
        {**good[0], "widget": "Other"},  # the same id twice in one batch
    ]
    response = await client.post(
        "/v1/events", json={"events": [*good, *bad]}, headers=bearer(app_key)
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["received"], answer["accepted"], answer["rejected"]) == (15, 5, 10)
    by_index = {error["index"]: error for error in answer["errors"]}
    assert sorted(by_index) == list(range(5, 15))
    assert by_index[5]["param"] == "events.5.action"
    assert by_index[5]["message"] == "events.5.action: widget.click events need action"
    assert by_index[6]["param"] == "events.6.name"
    assert by_index[7]["param"] == "events.7.timestamp"
    assert by_index[8]["param"] == "events.8.timestamp"
    assert "days ago" in by_index[7]["message"]
    assert "ahead" in by_index[8]["message"]
    assert by_index[9]["param"] == "events.9.widget"
    assert by_index[10]["param"] == "events.10.country"
    assert by_index[11]["param"] == "events.11.properties"
    assert (by_index[12]["code"], by_index[12]["id"]) == ("parameter_missing", None)
    assert by_index[13]["param"] == "events.13.extra_field"
    assert (by_index[14]["code"], by_index[14]["id"]) == ("duplicate_event_id", good[0]["id"])

    loaded = await load(settings)
    assert (loaded.inserted, loaded.duplicates) == (5, 0)
    stored = await AnalyticsEvent.filter(project_id=tenant.project.id).order_by("id")
    assert [row.client_id for row in stored] == [item["id"] for item in good]
    first = stored[0]
    assert (first.mode, first.widget, first.platform, first.country) == (
        KeyMode.TEST, "Score", "ios", "DE",
    )  # fmt: skip
    assert stored[3].properties == {"cart": 3, "coupon": None}


async def test_a_retried_batch_is_counted_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    batch = {"events": [impression() for _ in range(3)]}
    for _ in range(2):  # the answer was lost: the SDK sends the same batch again
        sent = await client.post("/v1/events", json=batch, headers=bearer(tenant.secret_key))
        assert sent.json()["accepted"] == 3
    loaded = await load(settings)
    assert (loaded.inserted, loaded.duplicates) == (3, 3)
    # Sent again after it was loaded: still once.
    await client.post("/v1/events", json=batch, headers=bearer(tenant.secret_key))
    assert (await load(settings)).inserted == 0
    summary = await client.get("/v1/analytics/summary", headers=bearer(tenant.secret_key))
    assert summary.json()["widget_impressions"] == 3


async def test_the_envelope_is_refused_whole_and_keys_need_their_scopes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    key = bearer(tenant.secret_key)
    for body, param in (
        ({"events": []}, "events"),
        ({"events": [impression() for _ in range(501)]}, "events"),
        ({"events": [impression(), "not an object"]}, "events.1"),
        ({}, "events"),
    ):
        refused = await client.post("/v1/events", json=body, headers=key)
        assert refused.status_code == 400, body
        assert refused.json()["error"]["param"] == param
    app_key = bearer(await publishable_key(tenant))
    for path in ("/v1/analytics/summary", "/v1/analytics/events", "/v1/analytics/events.csv"):
        denied = await client.get(path, headers=app_key)
        assert denied.status_code == 403, path
        assert denied.json()["error"]["code"] == "missing_scope"
    assert (await load(settings)).inserted == 0


async def test_redis_away_is_a_503_and_nothing_of_the_batch_is_kept(
    make_settings: Callable[..., Settings], database: None, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    # An API whose Redis is a port where nothing listens: the rate limiter answers from its
    # own buckets, the buffer cannot append.
    away = make_settings(redis_url="redis://127.0.0.1:1/0")
    async with serving(create_app(away)) as url, httpx.AsyncClient(base_url=url) as api:
        refused = await api.post("/v1/events", json={"events": [impression()]},
                                 headers=bearer(tenant.secret_key))  # fmt: skip
    assert refused.status_code == 503
    assert refused.json()["error"]["param"] == "redis"
    assert "none of this batch was accepted" in refused.json()["error"]["message"]
    assert (await load(settings)).batches == 0


async def test_a_full_buffer_refuses_until_workers_catch_up(
    make_settings: Callable[..., Settings], database: None
) -> None:
    tenant = await make_tenant("Acme", roles=())
    small = make_settings(analytics_buffer_max_bytes=1024 * 1024)
    big = {"events": [impression(properties={"padding": "x" * 4000}) for _ in range(200)]}
    async with serving(create_app(small)) as url, httpx.AsyncClient(base_url=url) as api:
        key = bearer(tenant.secret_key)
        first = await api.post("/v1/events", json=big, headers=key)  # ~0.8 MB: fits
        assert first.status_code == 200, first.text
        second = await api.post("/v1/events", json=big, headers=key)
        assert second.status_code == 503
        assert second.json()["error"]["code"] == "analytics_buffer_full"
        assert second.headers["retry-after"] == "30"
        assert (await load(small)).inserted == 200
        third = await api.post("/v1/events", json=big, headers=key)  # room again
        assert third.status_code == 200


async def test_the_summary_counts_by_widget_platform_and_day_with_push_rates(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    key = bearer(tenant.secret_key)
    push = await Push.create(
        project=tenant.project, mode=KeyMode.TEST, kind="alert", content={}, target={},
        status=PushStatus.COMPLETED, recipients=4,
    )  # fmt: skip
    for status in [*[DeliveryStatus.DELIVERED] * 3, DeliveryStatus.FAILED]:
        await Delivery.create(
            push=push, provider="sandbox", platform="ios", status=status, apns_id=str(uuid.uuid4())
        )
    await Activity.create(
        project=tenant.project, mode=KeyMode.TEST, activity_type="Match", attributes={},
        content_state={}, status=ActivityStatus.ACTIVE, started_by="server", last_timestamp=1,
    )  # fmt: skip
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    events = [
        *[impression("Score", platform="ios", country="DE") for _ in range(6)],
        *[impression("Score", platform="android") for _ in range(2)],
        impression("Weather", platform="ios", timestamp=yesterday),
        *[event("widget.click", widget="Score", action="open", platform="ios") for _ in range(2)],
        event("push.opened", push_id=push.id, platform="ios"),
        event("push.opened", push_id=push.id, platform="android"),
        event("activity.start", activity_id=f"act_{'a' * 24}"),
        event("error", error_message="boom"),
    ]
    sent = await client.post("/v1/events", json={"events": events}, headers=key)
    assert sent.json()["accepted"] == len(events)
    await load(settings)

    week = (await client.get("/v1/analytics/summary", headers=key)).json()
    assert (week["granularity"], week["events"]) == ("day", 15)
    assert (week["widget_impressions"], week["widget_clicks"]) == (9, 2)
    assert week["click_through_rate"] == pytest.approx(2 / 9)
    assert week["widgets"] == [
        {"widget": "Score", "impressions": 8, "clicks": 2, "click_through_rate": 0.25},
        {"widget": "Weather", "impressions": 1, "clicks": 0, "click_through_rate": 0.0},
    ]
    assert week["pushes"] == {"attempted": 4, "delivered": 3, "delivery_success_rate": 0.75,
                              "opened": 2, "open_rate": pytest.approx(2 / 3)}  # fmt: skip
    assert week["live_activities"] == {"active": 1, "started": 1, "updated": 0, "ended": 0}
    assert (week["errors"], week["error_rate"]) == (1, pytest.approx(1 / 15))
    days = week["groups"]
    assert len(days) == 7  # every day of the window, empty ones too
    assert [day["events"] for day in days[-2:]] == [1, 14]
    assert days[-2]["counts"] == {"widget.impression": 1}

    by_platform = (await client.get("/v1/analytics/summary", params={"group_by": "platform"},
                                    headers=key)).json()  # fmt: skip
    assert [(g["key"], g["events"]) for g in by_platform["groups"]] == [
        ("ios", 10), ("android", 3), (None, 2),
    ]  # fmt: skip
    by_country = (await client.get("/v1/analytics/summary", params={"group_by": "country"},
                                   headers=key)).json()  # fmt: skip
    assert by_country["groups"][0] == {"key": None, "events": 9,
                                       "counts": by_country["groups"][0]["counts"]}  # fmt: skip
    assert by_country["groups"][1]["key"] == "DE"

    day = (await client.get("/v1/analytics/summary", params={"period": "24h"},
                            headers=key)).json()  # fmt: skip
    assert (day["granularity"], day["events"]) == ("hour", 14)  # yesterday's is outside
    since = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    ranged = (await client.get("/v1/analytics/summary", params={"from": since},
                               headers=key)).json()  # fmt: skip
    assert (ranged["granularity"], ranged["events"]) == ("hour", 15)
    backwards = await client.get("/v1/analytics/summary", params={"from": since, "to": since},
                                 headers=key)  # fmt: skip
    assert backwards.status_code == 400
    assert backwards.json()["error"]["param"] == "from"
    # One bound given, the other defaulted past it: refused too, naming the bound given.
    for given, value in (("to", "1970-01-01T00:00:00Z"), ("from", "2999-12-31T00:00:00Z")):
        one_sided = await client.get("/v1/analytics/summary", params={given: value}, headers=key)
        assert one_sided.status_code == 400, one_sided.text
        assert one_sided.json()["error"]["param"] == given


async def test_events_are_listed_newest_first_filtered_and_paged(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    key = bearer(tenant.secret_key)
    start = datetime.now(UTC) - timedelta(minutes=30)
    events = [impression(timestamp=(start + timedelta(minutes=n)).isoformat(), user_id=f"u{n % 2}")
              for n in range(7)]  # fmt: skip
    await client.post("/v1/events", json={"events": events}, headers=key)
    await load(settings)
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 3, "user_id": "u0"}
        if after:
            params["starting_after"] = after
        page = (await client.get("/v1/analytics/events", params=params, headers=key)).json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == [events[n]["id"] for n in (6, 4, 2, 0)]
    first = (await client.get("/v1/analytics/events", params={"limit": 1}, headers=key)).json()
    assert first["data"][0]["object"] == "event"
    assert first["data"][0]["widget"] == "Score"
    missing = await client.get("/v1/analytics/events", params={"starting_after": "nope"},
                               headers=key)  # fmt: skip
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "resource_missing")


async def test_the_csv_export_streams_every_event_oldest_first(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    key = bearer(tenant.secret_key)
    start = datetime.now(UTC) - timedelta(hours=2)
    total = 0
    for chunk in range(6):  # 3,000 events: more than one of the export's chunks
        batch = [impression(timestamp=(start + timedelta(seconds=chunk * 500 + n)).isoformat())
                 for n in range(500)]  # fmt: skip
        await client.post("/v1/events", json={"events": batch}, headers=key)
        total += len(batch)
    await client.post("/v1/events", json={"events": [
        event("error", error_message="=HYPERLINK(\"http://evil\")",
              timestamp=(start - timedelta(minutes=1)).isoformat()),
    ]}, headers=key)  # fmt: skip
    await load(settings)
    async with client.stream("GET", "/v1/analytics/events.csv", headers=key) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        chunks = [chunk async for chunk in response.aiter_text()]
    assert len(chunks) > 1  # streamed in pieces, not built whole
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == total + 1
    assert rows[0]["name"] == "error"
    assert rows[0]["error_message"] == '\'=HYPERLINK("http://evil")'  # never a formula
    stamps = [row["timestamp"] for row in rows]
    assert stamps == sorted(stamps)
    only_errors = await client.get("/v1/analytics/events.csv", params={"name": "error"},
                                   headers=key)  # fmt: skip
    assert len(only_errors.text.strip().splitlines()) == 2


async def test_each_mode_and_project_sees_only_its_own_events(
    app: Starlette, client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=())
    other = await make_tenant("Other", roles=())
    _, live = await issue_api_key(tenant.project, name="live", kind=KeyKind.SECRET,
                                  mode=KeyMode.LIVE, pepper=TEST_SECRET_KEY)  # fmt: skip
    same_id = str(uuid.uuid4())
    for key in (tenant.secret_key, live, other.secret_key):
        body = {"events": [impression(id=same_id)]}  # the same id is another event elsewhere
        assert (await client.post("/v1/events", json=body, headers=bearer(key))).status_code == 200
    assert (await load(settings)).inserted == 3
    for key in (tenant.secret_key, live, other.secret_key):
        listed = (await client.get("/v1/analytics/events", headers=bearer(key))).json()
        assert [item["id"] for item in listed["data"]] == [same_id]
        summary = (await client.get("/v1/analytics/summary", headers=bearer(key))).json()
        assert summary["widget_impressions"] == 1


async def test_deleting_a_project_deletes_its_events_and_counts(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    tenant = await make_tenant("Acme", roles=(Role.OWNER,))
    keep = await make_tenant("Kept", roles=())
    for owner in (tenant, keep):
        await client.post("/v1/events", json={"events": [impression(), impression()]},
                          headers=bearer(owner.secret_key))  # fmt: skip
    assert (await load(settings)).inserted == 4
    deleted = await client.delete(f"/v1/projects/{tenant.project.id}",
                                  headers=tenant.owner.headers)  # fmt: skip
    assert deleted.status_code == 200, deleted.text
    assert not await AnalyticsEvent.filter(project_id=tenant.project.id).exists()
    assert not await AnalyticsRollup.filter(project_id=tenant.project.id).exists()
    assert await AnalyticsEvent.filter(project_id=keep.project.id).count() == 2
