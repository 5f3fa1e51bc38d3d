"""The FCM provider: pushes spelled as Google documents them, and against the fake FCM every
answer Google can give, as the worker sees it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest

from controlplane.models import TokenSlot
from controlplane.payloads import PushContent
from controlplane.settings import Settings
from tests.support.google import new_service_account
from workers.fakes.fcm import (
    INTERNAL,
    INVALID_TOKEN,
    QUOTA_EXCEEDED,
    SENDER_ID_MISMATCH,
    THIRD_PARTY_AUTH_ERROR,
    UNAVAILABLE,
    UNREGISTERED,
    FakeFCM,
    FcmOutcome,
)
from workers.providers.base import OutcomeKind, Recipient, Unsendable
from workers.providers.fcm import FCM, FcmProvider, FcmPush


@pytest.fixture
async def provider() -> AsyncIterator[Callable[..., FcmProvider]]:
    """FCM providers for a fake (with a service account it knows), closed after the test."""
    made: list[FcmProvider] = []

    def make(fake: FakeFCM, **settings: Any) -> FcmProvider:
        info, public_key = new_service_account("https://oauth2.googleapis.com/token")
        fake.add_account(info["client_email"], info["project_id"], info["private_key_id"],
                         public_key)  # fmt: skip
        made.append(FcmProvider(service_account=info, settings=Settings(
            fcm_base_url=fake.base_url, fcm_token_url=fake.token_url, **settings)))  # fmt: skip
        return made[-1]

    yield make
    for fcm in made:
        await fcm.close()


def spelled(fields: dict[str, Any], **recipient: Any) -> dict[str, Any]:
    content = PushContent.model_validate(fields)
    to = Recipient(**{"token": "t", "platform": "android", "message_id": "id", **recipient})
    return cast(FcmPush, FCM.request(content, to, {})).message


def test_an_alert_is_spelled_as_google_documents() -> None:
    shown = {"title": "Order shipped", "body": "Today", "sound": "default", "badge": 3}
    fcm = spelled(
        {"kind": "alert", "alert": shown, "data": {"order": 42}, "ttl": 60,
         "collapse_id": "order-42"},
        collapse_id="order-42", expires_at=int(time.time()) + 60,
    )  # fmt: skip
    assert fcm["token"] == "t"
    assert fcm["notification"] == {"title": "Order shipped", "body": "Today"}
    assert fcm["data"] == {"order": "42"}  # FCM data values are strings
    ttl = fcm["android"].pop("ttl")
    assert ttl in ("59s", "60s")  # what is left of the push's life, counted from now
    assert fcm["android"] == {
        "priority": "HIGH", "collapse_key": "order-42",
        "notification": {"sound": "default", "notification_count": 3, "tag": "order-42"},
    }  # fmt: skip


def test_every_notification_option_is_spelled_as_googles_android_notification() -> None:
    fcm = spelled({"kind": "alert", "alert": {
        "title_loc_key": "ORDER_TITLE", "title_loc_args": ["42"],
        "body_loc_key": "ORDER_BODY", "body_loc_args": ["today"],
        "image_url": "https://cdn.example.com/box.png", "channel_id": "orders",
        "icon": "ic_box", "color": "#FF8800", "click_action": "OPEN_ORDER", "tag": "o-42",
        "notification_priority": "high", "visibility": "private",
        # APNs' own options are not FCM fields: they stay out of Google's message.
        "thread_id": "order-42", "interruption_level": "passive", "mutable_content": True,
    }}, collapse_id="order")  # fmt: skip
    assert "notification" not in fcm  # no plain text: the app's localized strings say it
    assert fcm["android"]["notification"] == {
        "title_loc_key": "ORDER_TITLE", "title_loc_args": ["42"],
        "body_loc_key": "ORDER_BODY", "body_loc_args": ["today"],
        "image": "https://cdn.example.com/box.png", "channel_id": "orders", "icon": "ic_box",
        "color": "#FF8800", "click_action": "OPEN_ORDER",
        "tag": "o-42",  # asked for: wins over the collapse id
        "notification_priority": "PRIORITY_HIGH", "visibility": "PRIVATE",
    }  # fmt: skip
    assert fcm["android"]["collapse_key"] == "order"


def test_the_raw_android_override_is_merged_into_the_android_config() -> None:
    fcm = spelled({
        "kind": "alert", "alert": {"title": "Hi", "channel_id": "orders"}, "ttl": 60,
        "android": {"notification": {"sticky": True, "channel_id": "urgent"},
                    "direct_boot_ok": True, "priority": "NORMAL"},
    })  # fmt: skip
    assert fcm["android"]["notification"] == {"channel_id": "urgent", "sticky": True}
    assert (fcm["android"]["direct_boot_ok"], fcm["android"]["priority"]) == (True, "NORMAL")
    assert fcm["android"]["ttl"] in ("59s", "60s")  # what the override does not name stays
    assert fcm["notification"] == {"title": "Hi"}
    assert fcm["token"] == "t"


def test_a_widget_update_is_a_data_only_message() -> None:
    fcm = spelled({"kind": "background", "data": {"widget": {"temp": 21}}})
    assert "notification" not in fcm
    assert fcm["data"] == {"widget": '{"temp":21}'}
    assert fcm["android"] == {"priority": "NORMAL"}


def test_a_widget_reload_is_a_data_message_naming_the_kind_to_the_device_token() -> None:
    content = PushContent.model_validate({"kind": "widget", "widget": {"kind": "OrderWidget"}})
    fcm = FCM.request(content, Recipient(token="t", platform="android", message_id="id"), {})
    message = cast(FcmPush, fcm).message
    assert "notification" not in message
    assert message["data"] == {"brik_widget_reload": "OrderWidget"}
    assert message["android"] == {"priority": "NORMAL"}
    assert message["token"] == "t"
    assert FCM.token_slot(content, "android") is TokenSlot.DEVICE  # Android has no other
    high = spelled({"kind": "widget", "widget": {"kind": "OrderWidget"}, "priority": "high"})
    assert high["android"]["priority"] == "HIGH"


def test_a_live_activity_is_a_data_message_the_app_renders() -> None:
    android = spelled({"kind": "liveactivity", "live_activity": {
        "event": "start", "content_state": {"eta": 10}, "attributes_type": "OrderTracking",
        "attributes": {"order": 42},
    }})["data"]  # fmt: skip
    assert android["brik_live_activity_event"] == "start"
    assert json.loads(android["brik_live_activity_state"]) == {"eta": 10}
    assert android["brik_live_activity_type"] == "OrderTracking"


def test_what_fcm_cannot_send_is_refused() -> None:
    with pytest.raises(Unsendable, match="FCM does not send to ios devices"):
        spelled({"kind": "alert", "alert": {"title": "Hi"}}, platform="ios")
    unknown = PushContent.model_construct(kind="telegram", data={"x": 1})
    with pytest.raises(Unsendable, match="FCM cannot send a 'telegram' push"):
        FCM.request(unknown, Recipient(token="t", platform="android", message_id="id"), {})


async def test_each_google_answer_becomes_the_right_outcome(
    fcm_fake: FakeFCM, provider: Callable[..., FcmProvider]
) -> None:
    scripted: dict[str, tuple[FcmOutcome | None, OutcomeKind]] = {
        "t-ok": (None, OutcomeKind.DELIVERED),
        "t-gone": (UNREGISTERED, OutcomeKind.INVALID_TOKEN),
        "t-bad": (INVALID_TOKEN, OutcomeKind.INVALID_TOKEN),
        "t-quota": (QUOTA_EXCEEDED, OutcomeKind.RETRY),
        "t-500": (INTERNAL, OutcomeKind.RETRY),
        "t-503": (UNAVAILABLE, OutcomeKind.RETRY),
        "t-auth": (THIRD_PARTY_AUTH_ERROR, OutcomeKind.FAILED),
        # A token of another Firebase project: the token is wrong for us, not our credential.
        "t-other-project": (SENDER_ID_MISMATCH, OutcomeKind.INVALID_TOKEN),
        # A 404 that is not UNREGISTERED (a wrong endpoint) says nothing about the token.
        "t-404": (FcmOutcome(404, "NOT_FOUND", None, "Not found."), OutcomeKind.FAILED),
    }
    for token, (outcome, _) in scripted.items():
        if outcome is not None:
            fcm_fake.script(token, outcome)
    fcm = provider(fcm_fake)
    outcomes = await fcm.send([FcmPush({"token": token, "data": {"k": "v"}}) for token in scripted])
    for (token, (_, kind)), outcome in zip(scripted.items(), outcomes, strict=True):
        assert outcome.kind is kind, (token, outcome)
    assert outcomes[0].provider_message_id is not None
    assert outcomes[3].retry_after == 30  # Retry-After is honoured by the caller, not slept on
    assert "service-account" in outcomes[6].reason


async def test_a_malformed_message_is_a_permanent_failure_not_a_dead_token(
    fcm_fake: FakeFCM, provider: Callable[..., FcmProvider]
) -> None:
    fcm = provider(fcm_fake)
    [outcome] = await fcm.send([FcmPush({"token": "t", "android": {"ttl": "soon"}})])
    assert outcome.kind is OutcomeKind.FAILED
    assert "ttl" in outcome.reason


async def test_sends_wait_for_google_side_by_side_up_to_the_in_flight_setting(
    fcm_fake: FakeFCM, provider: Callable[..., FcmProvider]
) -> None:
    """Google answers in tens of milliseconds: a worker keeps BRIK_FCM_IN_FLIGHT sends waiting
    at once, not as many as a thread pool has threads."""
    fcm_fake.default_delay = 0.3
    fcm = provider(fcm_fake, fcm_in_flight=20)
    outcomes = await fcm.send([FcmPush({"token": f"t-{n}", "data": {}}) for n in range(50)])
    assert [o.kind for o in outcomes] == [OutcomeKind.DELIVERED] * 50
    assert fcm_fake.peak_in_flight == 20
    assert len({m.token for m in fcm_fake.accepted()}) == 50
