"""FCM: how a push is spelled for Google's HTTP v1 API, sent with pyfcm (driven by
:mod:`workers.providers.fcm_connection`), and how Google's answers become outcomes.

**Spelling.** One shape per kind of push in :data:`SHAPES`, over what every message has (the
token, ``android.priority``, ``android.ttl``, ``android.collapse_key``, the app's ``data`` —
whose values FCM wants as strings, so others travel as JSON):

================  ============================================================================
kind              FCM v1 message
================  ============================================================================
``alert``         ``notification`` (title, body); in ``android.notification``: sound, badge
                  (``notification_count``), ``tag`` (default: the collapse id), the
                  localization keys (``title_loc_key``/``args``, ``body_loc_key``/``args``),
                  ``image``, ``channel_id``, ``icon``, ``color``, ``click_action``,
                  ``notification_priority`` (``PRIORITY_*``), ``visibility`` (upper case)
``background``    a data-only message, priority ``NORMAL`` unless ``high`` is asked for
``liveactivity``  a data-only message carrying the event, the content state, the attributes
                  type and attributes, and its timestamp (``brik_live_activity_*``), and the
                  activity's id (``brik_activity_id``): Android has no Live Activities, the
                  app renders an ongoing notification and keeps the newest timestamp
``widget``        a data-only message ``brik_widget_reload: <kind>``, priority ``NORMAL``
                  unless ``high`` is asked for: the app's receiver tells its AppWidget of that
                  kind to refresh (``AppWidgetManager``), which reads ``widget:{kind}`` from
                  Brik's state
================  ============================================================================

Every FCM message goes to the device's own registration token — an update of an activity
addressed by id too: Android has no other.

Raw override: ``content.android`` is deep-merged over the ``android`` block built above (the
tenant's keys win), so any AndroidConfig field Brik does not spell can still be sent.

Options: ``priority`` ``high`` → ``HIGH``, ``normal`` → ``NORMAL``; the ``ttl`` → what is left
of it as ``android.ttl`` (FCM counts from the send, so a scheduled or retried push passes what
remains); the collapse id → ``android.collapse_key``.

**Answers** are decided on (HTTP status, FCM error code) pairs in named sets, as in the APNs
provider:

* :data:`DEAD_TOKEN_ERRORS` — 404 ``UNREGISTERED`` (the app is gone from the device) and 403
  ``SENDER_ID_MISMATCH`` (the token belongs to another Firebase project: it can never work with
  this project's credential, and the credential is fine for every other token) invalidate the
  device; so does a 400 ``INVALID_ARGUMENT`` whose message is about the registration token
  (sygnal never drops a token on 400; we do, when FCM says the token is the problem);
* :data:`TEMPORARY_STATUSES` — 429 ``QUOTA_EXCEEDED`` (with its ``Retry-After``), 500
  ``INTERNAL``, 502, 503 ``UNAVAILABLE``, 504: retried;
* any other 401/403 is a credential error with a message saying what to fix; any other answer
  (a 400 about the message, a 404 that is not ``UNREGISTERED``) a permanent failure with
  FCM's message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp

from controlplane.payloads import PushContent
from controlplane.settings import Settings
from workers.providers.base import Credential, Outcome, ProviderKind, Recipient, deep_merged
from workers.providers.fcm_connection import FcmResult, FcmSender

DEAD_TOKEN_ERRORS = frozenset({(404, "UNREGISTERED"), (403, "SENDER_ID_MISMATCH")})
TEMPORARY_STATUSES = frozenset({429, 500, 502, 503, 504})
CREDENTIAL_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class FcmPush:
    """One FCM v1 message (the ``message`` object, ``token`` included)."""

    message: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1

    @property
    def token(self) -> str:
        return str(self.message.get("token", ""))


def _string_data(data: dict[str, Any] | None) -> dict[str, str]:
    """FCM data values must be strings: non-strings travel as JSON."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for key, value in (data or {}).items()
    }


# A kind's shape fills in the message, its android block and its data for that kind.
Shape = Callable[[PushContent, dict[str, Any], dict[str, Any], dict[str, str]], None]


def _alert(
    content: PushContent, message: dict[str, Any], android: dict[str, Any], data: dict[str, str]
) -> None:
    alert = content.alert
    assert alert is not None
    shown = {"title": alert.title, "body": alert.body}
    if any(shown.values()):
        message["notification"] = {key: value for key, value in shown.items() if value}
    notification: dict[str, Any] = {
        key: value
        for key, value in {
            "sound": alert.sound or None,
            "notification_count": alert.badge,
            "tag": alert.tag or android.get("collapse_key"),
            "title_loc_key": alert.title_loc_key,
            "title_loc_args": alert.title_loc_args,
            "body_loc_key": alert.body_loc_key,
            "body_loc_args": alert.body_loc_args,
            "image": alert.image_url,
            "channel_id": alert.channel_id,
            "icon": alert.icon,
            "color": alert.color,
            "click_action": alert.click_action,
            "notification_priority": _NOTIFICATION_PRIORITIES.get(alert.notification_priority),
            "visibility": alert.visibility.upper() if alert.visibility else None,
        }.items()
        if value is not None
    }
    if notification:
        android["notification"] = notification


_NOTIFICATION_PRIORITIES: dict[str | None, str] = {
    level: f"PRIORITY_{level.upper()}" for level in ("min", "low", "default", "high", "max")
}


def _background(
    content: PushContent, message: dict[str, Any], android: dict[str, Any], data: dict[str, str]
) -> None:
    android["priority"] = "HIGH" if content.priority == "high" else "NORMAL"


def _live_activity(
    content: PushContent, message: dict[str, Any], android: dict[str, Any], data: dict[str, str]
) -> None:
    live = content.live_activity
    assert live is not None
    data["brik_live_activity_event"] = live.event
    data["brik_live_activity_state"] = json.dumps(live.content_state, separators=(",", ":"))
    if live.attributes_type:
        data["brik_live_activity_type"] = live.attributes_type
    if live.attributes is not None:
        data["brik_live_activity_attributes"] = json.dumps(live.attributes, separators=(",", ":"))
    if live.activity_id is not None:
        data["brik_activity_id"] = live.activity_id
    if live.timestamp is not None:
        # The app keeps the newest: an older update arriving late is ignored.
        data["brik_live_activity_timestamp"] = str(live.timestamp)


WIDGET_KEY = "brik_widget_reload"  # the data key an app's receiver looks for


def _widget(
    content: PushContent, message: dict[str, Any], android: dict[str, Any], data: dict[str, str]
) -> None:
    widget = content.widget
    assert widget is not None
    data[WIDGET_KEY] = widget.kind
    android["priority"] = "HIGH" if content.priority == "high" else "NORMAL"


SHAPES: dict[str, Shape] = {
    "alert": _alert,
    "background": _background,
    "liveactivity": _live_activity,
    "widget": _widget,
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

    ``ttl``: the seconds the push has left to live; default, the content's whole ``ttl``.
    """
    shape = SHAPES[content.kind]
    android: dict[str, Any] = {"priority": "NORMAL" if content.priority == "normal" else "HIGH"}
    ttl = content.ttl if ttl is None else ttl
    if ttl is not None:
        android["ttl"] = f"{ttl}s"
    if collapse_id:
        android["collapse_key"] = collapse_id
    message: dict[str, Any] = {"token": token, "android": android}
    data = _string_data(content.data)
    shape(content, message, android, data)
    if data:
        message["data"] = data
    if content.android:
        message["android"] = deep_merged(android, content.android)  # the tenant's keys win
    return FcmPush(message=message, attempt=attempt)


def spell(content: PushContent, recipient: Recipient, details: Mapping[str, Any]) -> FcmPush:
    """The FCM message for one device, with what is left of the push's life as its ttl."""
    left = None if recipient.expires_at is None else max(0, recipient.expires_at - int(time.time()))
    return fcm_message(
        content, token=recipient.token, collapse_id=recipient.collapse_id,
        attempt=recipient.attempt, ttl=left,
    )  # fmt: skip


def wire_form(content: PushContent) -> dict[str, Any]:
    """The message Google would receive for ``content``, its token left out."""
    message = fcm_message(content, token="", collapse_id=content.collapse_id).message
    message.pop("token")
    return message


def encoded_size(content: PushContent) -> int:
    """Bytes of the message Google would receive for ``content``, its token left out."""
    return len(json.dumps(wire_form(content), separators=(",", ":"), ensure_ascii=False).encode())


class FcmProvider:
    name = "fcm"

    def __init__(
        self, *, service_account: dict[str, Any], settings: Settings,
        max_in_flight: int | None = None,
    ) -> None:  # fmt: skip
        self._sender = FcmSender(service_account, settings, max_in_flight=max_in_flight)

    @classmethod
    def connect(cls, credential: Credential, settings: Settings) -> FcmProvider:
        """The provider for a project's FCM service account."""
        return cls(service_account=credential.secret["service_account"], settings=settings)

    def request(self, content: PushContent, recipient: Recipient) -> FcmPush:
        return cast(FcmPush, FCM.request(content, recipient, {}))

    async def send(self, pushes: Sequence[FcmPush]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(push) for push in pushes)))

    async def _send_one(self, push: FcmPush) -> Outcome:
        try:
            result = await self._sender.send(push.message)  # at most max_in_flight at once
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Outcome.retry(f"FCM connection failed: {type(exc).__name__}")
        return classify(result)

    async def close(self) -> None:
        await self._sender.close()


def classify(result: FcmResult) -> Outcome:
    if result.delivered:
        return Outcome.delivered(result.message_name)
    code = result.error_code or result.error_status or f"HTTP {result.status}"
    if (result.status, result.error_code) in DEAD_TOKEN_ERRORS:
        return Outcome.invalid_token(code)
    if result.status == 400 and "registration token" in result.error_message.lower():
        return Outcome.invalid_token(f"{code}: {result.error_message}")
    if result.status in TEMPORARY_STATUSES:
        return Outcome.retry(code, result.retry_after)
    if result.status in CREDENTIAL_STATUSES:
        return Outcome.credential_refused(
            f"{code}: FCM refused the service account or sender; upload a valid "
            f"service-account key for this Firebase project ({result.error_message})"
        )
    return Outcome.failed(f"{code}: {result.error_message}")


FCM = ProviderKind(
    name="fcm",
    label="FCM",
    platforms=frozenset({"android"}),
    kinds=frozenset(SHAPES),
    connect=FcmProvider.connect,
    spell=spell,
    encoded_size=encoded_size,
    wire_form=wire_form,
)
