"""Push content spelled for APNs and FCM, and the 4 KB limits checked at accept time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.errors import InvalidRequest
from controlplane.payloads import PushContent, apns_push, check_sizes, fcm_message


def content(**fields: Any) -> PushContent:
    return PushContent.model_validate(fields)


def test_an_alert_for_both_platforms() -> None:
    shown = {"title": "Order shipped", "body": "Today", "sound": "default", "badge": 3}
    push = content(kind="alert", alert=shown, data={"order": 42}, ttl=60, collapse_id="order-42")
    apns = apns_push(push, token="ab" * 32, apns_id="id", topic="com.example.app",
                     collapse_id="order-42", expires_at=1_900_000_000)  # fmt: skip
    assert apns.payload == {
        "order": 42,
        "aps": {"alert": {"title": "Order shipped", "body": "Today"}, "sound": "default",
                "badge": 3},
    }  # fmt: skip
    assert (apns.push_type, apns.priority, apns.topic) == ("alert", 10, "com.example.app")
    fcm = fcm_message(push, token="t", collapse_id="order-42").message
    assert fcm["notification"] == {"title": "Order shipped", "body": "Today"}
    assert fcm["data"] == {"order": "42"}  # FCM data values are strings
    assert fcm["android"] == {
        "priority": "HIGH", "ttl": "60s", "collapse_key": "order-42",
        "notification": {"sound": "default", "notification_count": 3, "tag": "order-42"},
    }  # fmt: skip


def test_a_widget_update_is_a_silent_low_priority_push() -> None:
    push = content(kind="background", data={"widget": {"temp": 21}}, priority="high")
    apns = apns_push(push, token="ab" * 32, apns_id="id", topic="t", collapse_id=None,
                     expires_at=None)  # fmt: skip
    assert apns.payload == {"widget": {"temp": 21}, "aps": {"content-available": 1}}
    assert (apns.push_type, apns.priority) == ("background", 5)
    fcm = fcm_message(push, token="t", collapse_id=None).message
    assert "notification" not in fcm
    assert fcm["data"] == {"widget": '{"temp":21}'}


def test_live_activity_events() -> None:
    start = content(kind="liveactivity", live_activity={
        "event": "start", "content_state": {"eta": 10}, "attributes_type": "OrderTracking",
        "attributes": {"order": 42}, "alert": {"title": "On its way"},
        "stale_date": "2030-01-01T00:00:00Z", "relevance_score": 0.5,
    })  # fmt: skip
    apns = apns_push(start, token="ab" * 32, apns_id="id", topic="com.example.app",
                     collapse_id=None, expires_at=None)  # fmt: skip
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
    assert isinstance(aps["timestamp"], int)
    android = fcm_message(start, token="t", collapse_id=None).message["data"]
    assert android["brik_live_activity_event"] == "start"
    assert json.loads(android["brik_live_activity_state"]) == {"eta": 10}


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "alert"},
        {"kind": "alert", "alert": {}},
        {"kind": "liveactivity"},
        {"kind": "liveactivity", "live_activity": {"event": "start", "content_state": {}}},
        {"kind": "liveactivity", "live_activity": {"event": "update", "content_state": {},
                                                   "attributes": {}}},
        {"kind": "background", "alert": {"title": "x"}},
        {"kind": "alert", "alert": {"title": "x"}, "data": {"aps": 1}},
        {"kind": "alert", "alert": {"title": "x"}, "ttl": -1},
        {"kind": "telegram"},
    ],
)  # fmt: skip
def test_content_that_cannot_be_sent_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PushContent.model_validate(fields)


def test_the_4kb_limit_is_checked_for_both_providers() -> None:
    check_sizes(content(kind="background", data={"blob": "x" * 3900}))
    with pytest.raises(InvalidRequest) as error:
        check_sizes(content(kind="background", data={"blob": "x" * 4100}))
    assert error.value.code == "payload_too_large"
    # Non-string data grows as FCM strings (JSON-encoded): still checked.
    with pytest.raises(InvalidRequest):
        check_sizes(content(kind="background", data={"list": ['"'] * 900}))
