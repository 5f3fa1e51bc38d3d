"""What a push says, and how it is spelled for APNs and for FCM.

One request body (:class:`PushContent`) describes the push once; :func:`apns_push` and
:func:`fcm_push` build the provider-specific request for one device, and :func:`check_sizes`
refuses, at accept time, content that either provider would refuse for size (4 KB each).

========================  ==========================================  =============================
kind                      APNs                                        FCM (Android)
========================  ==========================================  =============================
``alert``                 push-type ``alert``, ``aps.alert``,          ``notification`` + ``data``,
                          sound, badge; data as top-level keys         sound/badge in ``android``
``background``            push-type ``background``, priority 5,        data-only message,
(widget update)           ``aps.content-available: 1`` + data          priority ``NORMAL``
``liveactivity``          push-type ``liveactivity``, topic            data-only message with the
                          ``<bundle>.push-type.liveactivity``,         event and content state (no
                          ``aps.event/content-state/timestamp`` …      Live Activities on Android)
========================  ==========================================  =============================

Options: ``priority`` (``high`` → APNs 10 / FCM ``HIGH``; ``normal`` → 5 / ``NORMAL``),
``ttl`` seconds, counted from when the push is due — ``send_at`` if scheduled, else when it
was accepted (→ ``apns-expiration`` / what is left of it as ``android.ttl``), ``collapse_id``
(→ ``apns-collapse-id`` / ``android.collapse_key`` and the notification ``tag``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from controlplane.errors import InvalidRequest
from controlplane.validation import WHOLE_NUMBER, Moment, field_error
from workers.providers.base import ApnsPush, FcmPush

MAX_PAYLOAD_BYTES = 4096
LIVE_ACTIVITY_SUFFIX = ".push-type.liveactivity"

Data = Annotated[
    dict[str, Any],
    Field(
        max_length=100,
        description="Custom keys for the app; not `aps`, which APNs reserves.",
        json_schema_extra={"not": {"required": ["aps"]}},
    ),
]


def _one_of_them_is_said(*names: str) -> JsonDict:
    """JSON Schema for "at least one of ``names`` is there and not empty"."""
    return {
        "anyOf": [
            {"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
            for name in names
        ]
    }


def _kind_is(kind: str, then: JsonDict, otherwise: JsonDict | None = None) -> JsonDict:
    rule: JsonDict = {"if": {"properties": {"kind": {"const": kind}}}, "then": then}
    return rule if otherwise is None else {**rule, "else": otherwise}


_PRESENT: JsonDict = {"type": "object"}
_ABSENT: JsonDict = {"type": "null"}


class Alert(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra=_one_of_them_is_said("title", "body")
    )
    title: str | None = Field(default=None, max_length=1000)
    subtitle: str | None = Field(default=None, max_length=1000)
    body: str | None = Field(default=None, max_length=4000)
    sound: str | None = Field(default=None, max_length=200)
    badge: Annotated[int, Field(ge=0, le=1_000_000), WHOLE_NUMBER] | None = None

    @model_validator(mode="after")
    def _says_something(self) -> Alert:
        if not (self.title or self.body):
            raise field_error("title", "an alert needs a title or a body")
        return self


class LiveActivity(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"event": {"const": "start"}}},
            "then": {
                "required": ["attributes_type", "attributes"],
                "properties": {"attributes_type": {"type": "string"}, "attributes": _PRESENT},
            },
            "else": {"properties": {"attributes_type": _ABSENT, "attributes": _ABSENT}},
        },
    )
    event: Literal["start", "update", "end"]
    content_state: dict[str, Any] = Field(max_length=200)
    attributes_type: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = Field(default=None, max_length=200)
    alert: Alert | None = None
    dismissal_date: Moment | None = None
    stale_date: Moment | None = None
    relevance_score: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _start_names_its_attributes(self) -> LiveActivity:
        if self.event == "start" and (self.attributes_type is None or self.attributes is None):
            missing = "attributes_type" if self.attributes_type is None else "attributes"
            raise field_error(missing, "a start event needs attributes_type and attributes")
        if self.event != "start" and (
            self.attributes_type is not None or self.attributes is not None
        ):
            extra = "attributes_type" if self.attributes_type is not None else "attributes"
            raise field_error(extra, "attributes_type and attributes are only sent on start")
        return self


class PushContent(BaseModel):
    """The provider-independent content of a push (the body of ``POST /v1/pushes`` minus ``to``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                _kind_is("alert", {"required": ["alert"], "properties": {"alert": _PRESENT}}),
                _kind_is("background", {"properties": {"alert": _ABSENT}}),
                _kind_is(
                    "liveactivity",
                    {"required": ["live_activity"], "properties": {"live_activity": _PRESENT}},
                    {"properties": {"live_activity": _ABSENT}},
                ),
            ]
        },
    )
    kind: Literal["alert", "background", "liveactivity"]
    alert: Alert | None = None
    data: Data | None = None
    live_activity: LiveActivity | None = None
    priority: Literal["high", "normal"] | None = None
    ttl: Annotated[int, Field(ge=0, le=28 * 24 * 3600), WHOLE_NUMBER] | None = Field(
        default=None, description="Seconds."
    )
    collapse_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _fits_its_kind(self) -> PushContent:
        if self.kind == "alert" and self.alert is None:
            raise field_error("alert", "kind 'alert' needs alert")
        if self.kind == "liveactivity" and self.live_activity is None:
            raise field_error("live_activity", "kind 'liveactivity' needs live_activity")
        if self.kind != "liveactivity" and self.live_activity is not None:
            raise field_error("live_activity", "live_activity is only for kind 'liveactivity'")
        if self.kind == "background" and self.alert is not None:
            raise field_error("alert", "a background push has no alert; use kind 'alert'")
        if self.data and "aps" in self.data:
            raise field_error("data.aps", "APNs reserves this key")
        return self

    @property
    def apns_priority(self) -> int:
        if self.kind == "background":
            return 5  # Apple rejects or throttles background pushes at priority 10
        return 5 if self.priority == "normal" else 10


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _aps_alert(alert: Alert) -> dict[str, Any]:
    return {k: v for k, v in {"title": alert.title, "subtitle": alert.subtitle,
                              "body": alert.body}.items() if v is not None}  # fmt: skip


def apns_payload(content: PushContent, now: float | None = None) -> dict[str, Any]:
    aps: dict[str, Any] = {}
    if content.kind == "alert":
        assert content.alert is not None
        aps["alert"] = _aps_alert(content.alert)
        if content.alert.sound:
            aps["sound"] = content.alert.sound
        if content.alert.badge is not None:
            aps["badge"] = content.alert.badge
    elif content.kind == "background":
        aps["content-available"] = 1
    else:
        live = content.live_activity
        assert live is not None
        aps["timestamp"] = int(now if now is not None else time.time())
        aps["event"] = live.event
        aps["content-state"] = live.content_state
        if live.event == "start":
            aps["attributes-type"] = live.attributes_type
            aps["attributes"] = live.attributes
        optional = {
            "dismissal-date": _unix(live.dismissal_date),
            "stale-date": _unix(live.stale_date),
            "relevance-score": live.relevance_score,
        }
        aps.update({k: v for k, v in optional.items() if v is not None})
        if live.alert is not None:
            aps["alert"] = _aps_alert(live.alert)
            if live.alert.sound:
                aps["sound"] = live.alert.sound
    return {**(content.data or {}), "aps": aps}


def apns_push(
    content: PushContent,
    *,
    token: str,
    apns_id: str,
    topic: str,
    collapse_id: str | None,
    expires_at: int | None,
    attempt: int = 1,
) -> ApnsPush:
    """The APNs request for one device (``topic`` is the app's bundle id)."""
    push_type = content.kind
    if content.kind == "liveactivity":
        topic = topic + LIVE_ACTIVITY_SUFFIX
    return ApnsPush(
        token=token, apns_id=apns_id, payload=apns_payload(content), push_type=push_type,
        topic=topic, priority=content.apns_priority, expiration=expires_at,
        collapse_id=collapse_id, attempt=attempt,
    )  # fmt: skip


def _string_data(data: dict[str, Any] | None) -> dict[str, str]:
    """FCM data values must be strings: non-strings travel as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for key, value in (data or {}).items()
    }


def fcm_message(
    content: PushContent,
    *,
    token: str,
    collapse_id: str | None,
    attempt: int = 1,
    ttl: int | None = None,
) -> FcmPush:
    """The FCM v1 message for one Android device.

    ``ttl``: the seconds the push has left to live (FCM's ttl is relative to the send, so a
    scheduled or retried push passes what remains); default, the content's whole ``ttl``.
    """
    android: dict[str, Any] = {"priority": "NORMAL" if content.priority == "normal" else "HIGH"}
    ttl = content.ttl if ttl is None else ttl
    if ttl is not None:
        android["ttl"] = f"{ttl}s"
    if collapse_id:
        android["collapse_key"] = collapse_id
    message: dict[str, Any] = {"token": token, "android": android}
    data = _string_data(content.data)
    if content.kind == "alert":
        assert content.alert is not None
        shown = {"title": content.alert.title, "body": content.alert.body}
        message["notification"] = {key: value for key, value in shown.items() if value}
        notification: dict[str, Any] = {}
        if content.alert.sound:
            notification["sound"] = content.alert.sound
        if content.alert.badge is not None:
            notification["notification_count"] = content.alert.badge
        if collapse_id:
            notification["tag"] = collapse_id
        if notification:
            android["notification"] = notification
    elif content.kind == "background":
        android["priority"] = "NORMAL" if content.priority != "high" else "HIGH"
    else:
        live = content.live_activity
        assert live is not None
        data["brik_live_activity_event"] = live.event
        data["brik_live_activity_state"] = json.dumps(live.content_state, separators=(",", ":"))
        if live.attributes_type:
            data["brik_live_activity_type"] = live.attributes_type
    if data:
        message["data"] = data
    return FcmPush(message=message, attempt=attempt)


def check_sizes(content: PushContent) -> None:
    """400 ``payload_too_large`` when either provider's form of the push exceeds 4 KB."""
    apns_bytes = len(json.dumps(apns_payload(content), ensure_ascii=False).encode())
    fcm = fcm_message(content, token="", collapse_id=content.collapse_id).message
    fcm.pop("token")
    fcm_bytes = len(json.dumps(fcm, separators=(",", ":"), ensure_ascii=False).encode())
    for provider, size in (("APNs", apns_bytes), ("FCM", fcm_bytes)):
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidRequest(
                f"The push is {size} bytes as {provider} would receive it; the limit is "
                f"{MAX_PAYLOAD_BYTES}. Send less data (or a reference the app fetches).",
                code="payload_too_large",
            )
