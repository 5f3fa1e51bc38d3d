"""The APNs provider: pushes spelled as Apple documents them, and against the fake APNs every
outcome Apple can give, as the worker sees it."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import pytest

from controlplane.models import TokenSlot
from controlplane.payloads import PushContent
from controlplane.settings import Settings
from tests.support.apple import TOPIC, SigningKey, new_signing_key
from workers.fakes.apns import (
    BAD_DEVICE_TOKEN,
    DEVICE_TOKEN_NOT_FOR_TOPIC,
    EXPIRED_PROVIDER_TOKEN,
    EXPIRED_TOKEN,
    INTERNAL_SERVER_ERROR,
    SERVICE_UNAVAILABLE,
    TOO_MANY_REQUESTS,
    UNREGISTERED,
    FakeAPNs,
    Outcome,
)
from workers.providers.apns import APNS, ApnsProvider, ApnsPush, classify, classify_broadcast
from workers.providers.apns_channels import StoragePolicy
from workers.providers.base import OutcomeKind, Recipient, Unsendable


def provider(settings: Settings, key: SigningKey, **kwargs: object) -> ApnsProvider:
    return ApnsProvider(
        key=key.pem, key_id=key.key_id, team_id=key.team_id, topic=TOPIC, sandbox=True,
        settings=settings, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def push(token: str, **fields: object) -> ApnsPush:
    return ApnsPush(token=token, apns_id=str(uuid.uuid4()), payload={"aps": {"alert": "hi"}},
                    **fields)  # type: ignore[arg-type]  # fmt: skip


def spelled(fields: dict[str, Any], topic: str = "com.example.app", **recipient: Any) -> ApnsPush:
    content = PushContent.model_validate(fields)
    to = Recipient(**{"token": "ab" * 32, "platform": "ios", "message_id": "id", **recipient})
    return cast(ApnsPush, APNS.request(content, to, {"topic": topic}))


def test_an_alert_is_spelled_as_apple_documents() -> None:
    shown = {"title": "Order shipped", "body": "Today", "sound": "default", "badge": 3}
    apns = spelled(
        {"kind": "alert", "alert": shown, "data": {"order": 42}, "ttl": 60,
         "collapse_id": "order-42"},
        collapse_id="order-42", expires_at=1_900_000_000,
    )  # fmt: skip
    assert apns.payload == {
        "order": 42,
        "aps": {"alert": {"title": "Order shipped", "body": "Today"}, "sound": "default",
                "badge": 3},
    }  # fmt: skip
    assert (apns.push_type, apns.priority, apns.topic) == ("alert", 10, "com.example.app")
    assert (apns.apns_id, apns.collapse_id, apns.expiration) == ("id", "order-42", 1_900_000_000)


def test_every_notification_option_is_spelled_as_apples_payload_key_reference() -> None:
    apns = spelled({"kind": "alert", "alert": {
        "title_loc_key": "ORDER_TITLE", "title_loc_args": ["42"],
        "subtitle_loc_key": "ORDER_SUB", "subtitle_loc_args": ["Anna"],
        "body_loc_key": "ORDER_BODY", "body_loc_args": ["today", "5"],
        "thread_id": "order-42", "category": "ORDER", "interruption_level": "time-sensitive",
        "relevance_score": 0.75, "target_content_id": "orders/42",
        "image_url": "https://cdn.example.com/box.png",
        # Android's own options are not APNs keys: they stay out of Apple's payload.
        "channel_id": "orders", "color": "#FF8800", "visibility": "private",
    }, "data": {"order": 42}})  # fmt: skip
    assert apns.payload == {
        "order": 42,
        "brik_image_url": "https://cdn.example.com/box.png",
        "aps": {
            "alert": {
                "title-loc-key": "ORDER_TITLE", "title-loc-args": ["42"],
                "subtitle-loc-key": "ORDER_SUB", "subtitle-loc-args": ["Anna"],
                "loc-key": "ORDER_BODY", "loc-args": ["today", "5"],
            },
            "thread-id": "order-42", "category": "ORDER",
            "interruption-level": "time-sensitive", "relevance-score": 0.75,
            "target-content-id": "orders/42",
            "mutable-content": 1,  # the image needs the notification service extension
        },
    }  # fmt: skip


def test_mutable_content_is_sent_when_asked_and_only_then() -> None:
    asked = spelled({"kind": "alert", "alert": {"body": "x", "mutable_content": True}})
    assert asked.payload["aps"]["mutable-content"] == 1
    for plain in ({"body": "x"}, {"body": "x", "mutable_content": False}):
        assert "mutable-content" not in spelled({"kind": "alert", "alert": plain}).payload["aps"]


def test_the_raw_apns_override_is_laid_over_brik_s_request() -> None:
    apns = spelled({
        "kind": "alert", "alert": {"title": "Hi", "body": "There", "thread_id": "a"},
        "data": {"order": 42, "kept": True},
        "apns": {
            "headers": {"apns-priority": 5, "apns-collapse-id": "mine"},
            "payload": {"aps": {"alert": {"launch-image": "box.png"}, "thread-id": "b",
                                "sound": {"critical": 1, "name": "x.caf", "volume": 0.5}},
                        "order": 43, "extra": [1]},
        },
    }, collapse_id="brik")  # fmt: skip
    assert apns.payload == {
        "order": 43, "kept": True, "extra": [1],
        "aps": {"alert": {"title": "Hi", "body": "There", "launch-image": "box.png"},
                "thread-id": "b", "sound": {"critical": 1, "name": "x.caf", "volume": 0.5}},
    }  # fmt: skip
    assert (apns.priority, apns.collapse_id, apns.apns_id) == (5, "mine", "id")


def test_a_widget_update_is_a_silent_low_priority_push() -> None:
    apns = spelled({"kind": "background", "data": {"widget": {"temp": 21}}, "priority": "high"})
    assert apns.payload == {"widget": {"temp": 21}, "aps": {"content-available": 1}}
    assert (apns.push_type, apns.priority) == ("background", 5)


def test_a_widget_reload_is_a_widgetkit_push_as_apple_documents() -> None:
    # "Updating widgets with WidgetKit push notifications": push type `widgets`, the bundle id
    # with `.push-type.widgets`, and `aps.content-changed` — nothing else: the widget reads its
    # data from state.
    apns = spelled({"kind": "widget", "widget": {"kind": "OrderWidget"}}, collapse_id="c")
    assert apns.payload == {"aps": {"content-changed": True}}
    assert (apns.push_type, apns.topic) == ("widgets", "com.example.app.push-type.widgets")
    assert (apns.priority, apns.collapse_id) == (10, "c")  # APNs' default; no rule confirmed
    normal = spelled({"kind": "widget", "widget": {"kind": "OrderWidget"}, "priority": "normal"})
    assert normal.priority == 5


def test_each_push_type_says_which_of_the_device_s_tokens_it_goes_to() -> None:
    start = {"event": "start", "content_state": {}, "attributes_type": "T", "attributes": {}}
    contents = {
        TokenSlot.DEVICE: {"kind": "alert", "alert": {"title": "Hi"}},
        TokenSlot.LIVE_ACTIVITY: {"kind": "liveactivity",
                                  "live_activity": {"event": "update", "content_state": {}}},
        TokenSlot.ACTIVITY: {"kind": "liveactivity", "live_activity": {
            "event": "update", "content_state": {}, "activity_id": "act_1"}},
        TokenSlot.PUSH_TO_START: {"kind": "liveactivity", "live_activity": start},
        TokenSlot.WIDGET: {"kind": "widget", "widget": {"kind": "OrderWidget"}},
    }  # fmt: skip
    for slot, fields in contents.items():
        assert APNS.token_slot(PushContent.model_validate(fields), "ios") is slot
    background = PushContent.model_validate({"kind": "background", "data": {"x": 1}})
    assert APNS.token_slot(background, "ios") is TokenSlot.DEVICE


def test_live_activity_events() -> None:
    apns = spelled({"kind": "liveactivity", "live_activity": {
        "event": "start", "content_state": {"eta": 10}, "attributes_type": "OrderTracking",
        "attributes": {"order": 42}, "alert": {"title": "On its way"},
        "stale_date": "2030-01-01T00:00:00Z", "relevance_score": 0.5,
    }})  # fmt: skip
    aps = apns.payload["aps"]
    assert apns.topic == "com.example.app.push-type.liveactivity"
    assert apns.push_type == "liveactivity"
    assert (aps["event"], aps["attributes-type"], aps["attributes"]) == (
        "start",
        "OrderTracking",
        {"order": 42},
    )
    assert aps["content-state"] == {"eta": 10}
    assert aps["stale-date"] == 1893456000
    assert aps["alert"] == {"title": "On its way"}
    assert isinstance(aps["timestamp"], int)


def test_what_apns_cannot_send_is_refused_not_spelled_as_something_else() -> None:
    alert = {"kind": "alert", "alert": {"title": "Hi"}}
    with pytest.raises(Unsendable, match="APNs does not send to android devices"):
        spelled(alert, platform="android")
    # A kind of push APNs has no spelling for (one the content model may learn before APNs
    # does) is refused, never sent as some other push type.
    unknown = PushContent.model_construct(kind="telegram", data={"x": 1})
    to = Recipient(token="ab" * 32, platform="ios", message_id="id")
    with pytest.raises(Unsendable, match="APNs cannot send a 'telegram' push"):
        APNS.request(unknown, to, {"topic": "com.example.app"})


async def test_a_push_type_aioapns_has_no_name_for_still_goes_out_with_its_header(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    apns = provider(apns_settings, signing_key)
    widgets = ApnsPush(
        token="0d" * 32, apns_id=str(uuid.uuid4()), push_type="widgets",
        topic=f"{TOPIC}.push-type.widgets", payload={"aps": {"content-changed": True}},
    )  # fmt: skip
    bare_topic = ApnsPush(
        token="0d" * 32, apns_id=str(uuid.uuid4()), push_type="widgets", topic=TOPIC,
        payload={"aps": {"content-changed": True}},
    )  # fmt: skip
    [outcome, refused] = await apns.send([widgets, bare_topic])
    await apns.close()
    assert outcome.kind is OutcomeKind.DELIVERED
    [received] = apns_fake.accepted()
    assert received.headers["apns-push-type"] == "widgets"
    # The fake wants the widgets topic: the bundle id alone is refused (BadTopic is the
    # fake's reason; Apple documents none for this case).
    assert (refused.kind, refused.reason) == (OutcomeKind.FAILED, "BadTopic")


async def test_each_apple_answer_becomes_the_right_outcome(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    scripted = {
        "01" * 32: (None, OutcomeKind.DELIVERED, ""),
        "02" * 32: (UNREGISTERED, OutcomeKind.INVALID_TOKEN, "Unregistered"),
        "03" * 32: (BAD_DEVICE_TOKEN, OutcomeKind.INVALID_TOKEN, "BadDeviceToken"),
        "04" * 32: (TOO_MANY_REQUESTS, OutcomeKind.RETRY, "TooManyRequests"),
        "05" * 32: (INTERNAL_SERVER_ERROR, OutcomeKind.RETRY, "InternalServerError"),
        "06" * 32: (SERVICE_UNAVAILABLE, OutcomeKind.RETRY, "ServiceUnavailable"),
        "07" * 32: (EXPIRED_PROVIDER_TOKEN, OutcomeKind.FAILED, "ExpiredProviderToken"),
        "08" * 32: (Outcome.error(400, "BadTopic"), OutcomeKind.FAILED, "BadTopic"),
        "09" * 32: (EXPIRED_TOKEN, OutcomeKind.INVALID_TOKEN, "ExpiredToken"),
        "0a" * 32: (DEVICE_TOKEN_NOT_FOR_TOPIC, OutcomeKind.INVALID_TOKEN, "DeviceTokenNot"),
    }
    for token, (outcome, _, _) in scripted.items():
        if outcome is not None:
            apns_fake.script(token, outcome)
    apns = provider(apns_settings, signing_key)
    pushes = [push(token) for token in scripted]
    outcomes = await apns.send(pushes)
    await apns.close()
    for (token, (_, kind, reason)), outcome in zip(scripted.items(), outcomes, strict=True):
        assert outcome.kind is kind, token
        assert outcome.reason.startswith(reason), (token, outcome.reason)
    assert "server clock" in outcomes[6].reason  # tells the tenant what to fix


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        # Apple's contract: only these (status, reason) pairs say the token is dead.
        ("410", "Unregistered", OutcomeKind.INVALID_TOKEN),
        ("410", "ExpiredToken", OutcomeKind.INVALID_TOKEN),
        ("400", "BadDeviceToken", OutcomeKind.INVALID_TOKEN),
        ("400", "DeviceTokenNotForTopic", OutcomeKind.INVALID_TOKEN),
        # A reason alone proves nothing: a 503 (an overloaded proxy, a gateway relaying an
        # old answer) is temporary whatever its body says, and the device stays.
        ("503", "Unregistered", OutcomeKind.RETRY),
        ("500", "BadDeviceToken", OutcomeKind.RETRY),
        ("403", "DeviceTokenNotForTopic", OutcomeKind.FAILED),
        ("404", "Unregistered", OutcomeKind.FAILED),
    ],
)
def test_a_token_is_dead_only_for_the_status_and_reason_apple_pairs(
    status: str, reason: str, kind: OutcomeKind
) -> None:
    assert classify(status, reason).kind is kind


async def test_a_timeout_is_a_retry_and_the_retry_keeps_the_apns_id(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    token = "0a" * 32
    apns_fake.script(token, Outcome.ok(delay=1.0))
    apns = provider(apns_settings, signing_key, response_timeout=0.2)
    first = push(token, collapse_id="order-1", expiration=int(time.time()) + 600)
    [timed_out] = await apns.send([first])
    assert timed_out.kind is OutcomeKind.RETRY
    [again] = await apns.send([first])  # the worker retries with the very same push
    await apns.close()
    assert again.kind is OutcomeKind.DELIVERED
    ids = {received.apns_id for received in apns_fake.received}
    assert ids == {first.apns_id}
    assert {r.headers["apns-collapse-id"] for r in apns_fake.received} == {"order-1"}


async def test_a_wrong_key_fails_every_push_with_a_credential_reason(
    apns_fake: FakeAPNs, apns_settings: Settings
) -> None:
    apns = provider(apns_settings, new_signing_key(key_id="REVOKED001"))
    outcomes = await apns.send([push("0b" * 32), push("0c" * 32)])
    await apns.close()
    assert {o.kind for o in outcomes} == {OutcomeKind.FAILED}
    assert "auth key" in outcomes[0].reason
    assert apns_fake.accepted() == []


async def test_in_flight_sends_are_bounded(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    tokens = [f"{n:064x}" for n in range(30)]
    for token in tokens:
        apns_fake.script(token, Outcome.ok(delay=0.05))
    apns = provider(apns_settings, signing_key, max_in_flight=5)
    outcomes = await apns.send([push(token) for token in tokens])
    await apns.close()
    assert all(o.kind is OutcomeKind.DELIVERED for o in outcomes)
    assert len(apns_fake.deliveries_per_device()) == 30


# -- broadcast channels (iOS 18) ---------------------------------------------------------------

LIVE_UPDATE = {"kind": "liveactivity", "live_activity": {
    "event": "update", "content_state": {"score": "2-1"}, "alert": {"title": "Goal!"},
}}  # fmt: skip


def broadcast_to(channel_id: str, fields: dict[str, Any] = LIVE_UPDATE, **recipient: Any) -> Any:
    content = PushContent.model_validate(fields)
    to = Recipient(token="", platform="ios", message_id=str(uuid.uuid4()), channel_id=channel_id,
                   **recipient)  # fmt: skip
    return content, to


def test_a_broadcast_is_spelled_for_its_channel_not_a_device() -> None:
    apns = spelled({**LIVE_UPDATE, "priority": "normal"}, token="", channel_id="Y2hhbm5lbA==",
                   collapse_id="c", expires_at=1_900_000_000)  # fmt: skip
    assert (apns.channel_id, apns.token, apns.collapse_id) == ("Y2hhbm5lbA==", "", None)
    # The bundle id goes in the path, where Apple refuses a push-type suffix.
    assert (apns.push_type, apns.topic) == ("liveactivity", "com.example.app")
    assert (apns.priority, apns.expiration) == (5, 1_900_000_000)
    assert apns.payload["aps"]["event"] == "update"
    assert apns.payload["aps"]["alert"] == {"title": "Goal!"}


def test_what_a_channel_cannot_carry_is_refused() -> None:
    start = {"kind": "liveactivity", "live_activity": {
        "event": "start", "content_state": {}, "attributes_type": "Match", "attributes": {},
    }}  # fmt: skip
    with pytest.raises(Unsendable, match="cannot start a Live Activity"):
        spelled(start, channel_id="Y2hhbm5lbA==")
    with pytest.raises(Unsendable, match="only Live Activity"):
        spelled({"kind": "alert", "alert": {"title": "Hi"}}, channel_id="Y2hhbm5lbA==")


async def test_a_broadcast_reaches_apns_once_per_channel(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    apns = provider(apns_settings, signing_key)
    match = await apns.channels.create(StoragePolicy.NO_MESSAGE_STORED)
    launch = await apns.channels.create(StoragePolicy.MOST_RECENT_MESSAGE_STORED)
    pushes = [apns.request(*broadcast_to(channel)) for channel in (match, launch)]
    device = push("0f" * 32)  # a device push in the same batch still goes through aioapns
    outcomes = await apns.send([*pushes, device])
    await apns.close()
    assert [o.kind for o in outcomes] == [OutcomeKind.DELIVERED] * 3
    assert outcomes[0].provider_message_id  # Apple's apns-unique-id
    assert apns_fake.broadcasts_per_channel() == {match: 1, launch: 1}
    for sent, received in zip(pushes, apns_fake.broadcasts, strict=True):
        assert (received.bundle_id, received.channel_id) == (TOPIC, sent.channel_id)
        assert received.request_id == sent.apns_id  # the delivery's id
        assert received.headers["apns-push-type"] == "liveactivity"
        assert received.headers["apns-priority"] == "10"
        assert received.payload == sent.payload
        assert received.payload["aps"]["content-state"] == {"score": "2-1"}
    assert [r.token for r in apns_fake.accepted()] == [device.token]


async def test_a_broadcast_to_a_deleted_channel_fails_for_good_saying_why(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    apns = provider(apns_settings, signing_key)
    channel = await apns.channels.create()
    [first] = await apns.send([apns.request(*broadcast_to(channel))])
    # The event is over: the channel is deleted elsewhere (the API, another worker).
    other = provider(apns_settings, signing_key)
    await other.channels.delete(channel)
    [late] = await apns.send([apns.request(*broadcast_to(channel))])
    [fresh] = await other.send([other.request(*broadcast_to(channel))])
    await apns.close()
    await other.close()
    assert first.kind is OutcomeKind.DELIVERED
    for failed in (late, fresh):
        assert failed.kind is OutcomeKind.FAILED  # not a dead token, and not retried
        assert failed.reason.startswith("ChannelNotRegistered: ")
        assert "deleted" in failed.reason
    assert [(b.status, b.reason) for b in apns_fake.broadcasts] == [
        (200, None), (400, "ChannelNotRegistered"),
    ]  # fmt: skip
    assert apns_fake.broadcasts_per_channel() == {channel: 1}


async def test_temporary_broadcast_answers_are_retried_with_the_same_request_id(
    apns_fake: FakeAPNs, apns_settings: Settings, signing_key: SigningKey
) -> None:
    apns = provider(apns_settings, signing_key)
    channel = await apns.channels.create()
    apns_fake.script_broadcast(
        channel, TOO_MANY_REQUESTS, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE, Outcome.dropped()
    )
    update = apns.request(*broadcast_to(channel))
    outcomes = [(await apns.send([update]))[0] for _ in range(5)]
    await apns.close()
    assert [o.kind for o in outcomes] == [OutcomeKind.RETRY] * 4 + [OutcomeKind.DELIVERED]
    assert [o.reason for o in outcomes[:3]] == [
        "TooManyRequests", "InternalServerError", "ServiceUnavailable",
    ]  # fmt: skip
    assert {b.request_id for b in apns_fake.broadcasts} == {update.apns_id}
    assert apns_fake.broadcasts_per_channel() == {channel: 1}


@pytest.mark.parametrize(
    ("status", "reason", "kind", "says"),
    [
        (200, None, OutcomeKind.DELIVERED, ""),
        (429, "TooManyProviderTokenUpdates", OutcomeKind.RETRY, "TooManyProviderTokenUpdates"),
        (503, "Shutdown", OutcomeKind.RETRY, "Shutdown"),
        (0, "APNs connection failed: ConnectError", OutcomeKind.RETRY, "APNs connection"),
        (400, "ChannelNotRegistered", OutcomeKind.FAILED, "deleted"),
        (400, "FeatureNotEnabled", OutcomeKind.FAILED, "Broadcast Capability"),
        (403, "TopicMismatch", OutcomeKind.FAILED, "may not send to this bundle id"),
        (403, "ExpiredProviderToken", OutcomeKind.FAILED, "server clock"),
        (400, "BadExpirationDate", OutcomeKind.FAILED, "BadExpirationDate"),
        # A broadcast has no token to drop, whatever Apple says.
        (410, "Unregistered", OutcomeKind.FAILED, "Unregistered"),
        (400, "BadDeviceToken", OutcomeKind.FAILED, "BadDeviceToken"),
    ],
)
def test_broadcast_answers_follow_apples_broadcast_table(
    status: int, reason: str | None, kind: OutcomeKind, says: str
) -> None:
    outcome = classify_broadcast(status, reason)
    assert outcome.kind is kind
    assert says in outcome.reason
