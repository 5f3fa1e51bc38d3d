"""Push content: what the API accepts, and the 4 KB limits checked at accept time against
every provider's wire (each provider's spelling is tested with it, tests/workers/providers/)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controlplane.errors import InvalidRequest
from controlplane.payloads import PushContent, check_sizes
from workers.providers.registry import PROVIDERS


def content(**fields: Any) -> PushContent:
    return PushContent.model_validate(fields)


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
        {"kind": "widget"},
        {"kind": "widget", "widget": {"kind": "OrderWidget"}, "data": {"eta": 5}},
        {"kind": "widget", "widget": {"kind": "OrderWidget"}, "alert": {"title": "x"}},
        {"kind": "widget", "widget": {"kind": ".hidden"}},
        {"kind": "widget", "widget": {"kind": "a/b"}},
        {"kind": "widget", "widget": {"kind": "w" * 129}},
        {"kind": "widget", "widget": {"kind": "OrderWidget", "family": "small"}},
        {"kind": "background", "data": {"x": 1}, "widget": {"kind": "OrderWidget"}},
    ],
)  # fmt: skip
def test_content_that_cannot_be_sent_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PushContent.model_validate(fields)


def test_a_widget_push_names_its_kind_and_carries_no_data() -> None:
    reload = content(kind="widget", widget={"kind": "com.example.app.OrderWidget"})
    assert reload.widget is not None
    assert reload.widget.kind == "com.example.app.OrderWidget"
    with pytest.raises(ValidationError) as error:
        content(kind="widget", widget={"kind": "OrderWidget"}, data={"eta": 5})
    assert "widget:{kind}" in str(error.value)  # says where the data goes instead


@pytest.mark.parametrize(
    ("alert", "param"),
    [
        ({"title": "x", "title_loc_args": ["x"]}, "title_loc_args"),  # args need their key
        ({"body": "x", "body_loc_args": ["x"]}, "body_loc_args"),
        ({"body": "x", "interruption_level": "urgent"}, "interruption_level"),
        ({"body": "x", "relevance_score": 1.5}, "relevance_score"),
        ({"body": "x", "color": "orange"}, "color"),
        ({"body": "x", "image_url": "http://example.com/a.png"}, "image_url"),
        ({"body": "x", "visibility": "hidden"}, "visibility"),
        ({"body": "x", "thread_id": ""}, "thread_id"),
        ({"body": "x", "title_loc_args": ["a"] * 21}, "title_loc_args"),
    ],
)  # fmt: skip
def test_a_wrong_notification_option_is_refused_by_name(alert: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as error:
        content(kind="alert", alert=alert)
    named = [str(e["loc"][-1]) if e["type"] != "parameter_invalid" else e["ctx"]["param"]
             for e in error.value.errors()]  # fmt: skip
    assert param in named, error.value.errors()


def test_a_localization_key_stands_in_for_the_text() -> None:
    assert content(kind="alert", alert={"body_loc_key": "HELLO"}).alert is not None
    with pytest.raises(ValidationError, match="title or a body"):
        content(kind="alert", alert={"thread_id": "t"})


def test_a_live_activity_alert_refuses_the_notification_options_apple_ignores_there() -> None:
    with pytest.raises(ValidationError) as error:
        content(kind="liveactivity", live_activity={
            "event": "update", "content_state": {}, "alert": {"title": "x", "thread_id": "t"},
        })  # fmt: skip
    assert error.value.errors()[0]["loc"] == ("live_activity", "alert", "thread_id")


def test_the_image_key_is_not_taken_twice() -> None:
    with pytest.raises(ValidationError, match="image_url is sent under this key"):
        content(kind="alert", alert={"body": "x", "image_url": "https://e.com/a.png"},
                data={"brik_image_url": "other"})  # fmt: skip


@pytest.mark.parametrize(
    ("apns", "param"),
    [
        ({"headers": {"apns-id": "x"}}, "apns-id"),
        ({"headers": {"APNs-Topic": "com.other"}}, "APNs-Topic"),
        ({"headers": {"apns-push-type": "voip"}}, "apns-push-type"),
        ({"headers": {"apns-priority": 7}}, "apns-priority"),
        ({"payload": {"aps": "x"}}, "payload.aps"),
        ({"payload": {"aps": {"timestamp": 1}}}, "payload.aps.timestamp"),
        ({"payload": {"aps": {"event": "end"}}}, "payload.aps.event"),
    ],
)
def test_an_apns_override_may_not_take_what_brik_owns(apns: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as error:
        content(kind="alert", alert={"body": "x"}, apns=apns)
    [wrong] = error.value.errors()
    named = wrong["ctx"]["param"] if wrong["type"] == "parameter_invalid" else wrong["loc"][-1]
    assert named == param


def test_the_4kb_limit_counts_the_raw_overrides() -> None:
    alert = {"body": "x"}
    check_sizes(content(kind="alert", alert=alert, apns={"payload": {"k": "x" * 3800}}),
                PROVIDERS)  # fmt: skip
    with pytest.raises(InvalidRequest, match="as APNs would receive it"):
        check_sizes(content(kind="alert", alert=alert, apns={"payload": {"k": "x" * 4100}}),
                    PROVIDERS)  # fmt: skip
    long = {"notification": {"ticker": "x" * 4100}}
    with pytest.raises(InvalidRequest, match="as FCM would receive it"):
        check_sizes(content(kind="alert", alert=alert, android=long), PROVIDERS)


def test_the_4kb_limit_is_checked_for_both_providers() -> None:
    check_sizes(content(kind="background", data={"blob": "x" * 3900}), PROVIDERS)
    with pytest.raises(InvalidRequest) as error:
        check_sizes(content(kind="background", data={"blob": "x" * 4100}), PROVIDERS)
    assert error.value.code == "payload_too_large"
    assert "as APNs would receive it" in error.value.message
    # Non-string data grows as FCM strings (JSON-encoded): still checked.
    with pytest.raises(InvalidRequest) as error:
        check_sizes(content(kind="background", data={"list": ['"'] * 600}), PROVIDERS)
    assert "as FCM would receive it" in error.value.message
