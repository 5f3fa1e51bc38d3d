"""APNs: how a push is spelled for Apple, sent over HTTP/2 with token auth (aioapns), and how
Apple's answers become outcomes.

**Spelling.** Each kind of push is one entry of :data:`PUSH_TYPES` — its ``apns-push-type``,
its topic suffix, the priority Apple allows it, its ``aps`` dictionary and which of the
device's tokens it goes to (its :class:`~controlplane.models.devices.TokenSlot`; the worker
asks, never decides); the app's ``data`` goes beside ``aps`` as top-level keys. Adding an APNs
push type is one entry there (and, if the push kind is new, its content in
``controlplane/payloads.py``):

================  ============================================================================
kind              APNs request
================  ============================================================================
``alert``         push-type ``alert``; ``aps.alert`` (title, subtitle, body and their
                  ``*-loc-key``/``*-loc-args``; the body's are ``loc-key``/``loc-args``),
                  sound, badge, ``thread-id``, ``category``, ``interruption-level``,
                  ``relevance-score``, ``target-content-id``, ``mutable-content: 1`` (asked
                  for, or implied by an image: its URL goes top-level as ``brik_image_url``,
                  where the app's notification service extension reads it)
``background``    push-type ``background``, always priority 5 (Apple throttles 10);
                  ``aps.content-available: 1``
``liveactivity``  push-type ``liveactivity``, topic ``<bundle>.push-type.liveactivity``;
                  ``aps.event``, ``content-state``, ``timestamp``, and on start
                  ``attributes-type`` + ``attributes``; ``dismissal-date``, ``stale-date``,
                  ``relevance-score``, an alert when given. On start to the push-to-start
                  token; an update or end of an activity Brik addresses by id to that
                  activity's own token on the device, one sent to devices to the device's
                  Live Activity token
``widget``        push-type ``widgets``, topic ``<bundle>.push-type.widgets``;
                  ``aps.content-changed: true`` and nothing else (WidgetKit reloads the
                  app's widget timelines, which read their data from Brik's state); to the
                  widget push token (iOS 26+, ``WidgetPushHandler``). Apple's article
                  ("Updating widgets with WidgetKit push notifications") names no priority
                  rule we could confirm: the push's own (10 unless ``normal``) is sent
================  ============================================================================

**Broadcasts** (iOS 18): a recipient with a ``channel_id`` is an APNs broadcast channel, not a
device. Only Live Activity updates and ends go there — a broadcast cannot start a Live Activity
(Apple), so a start is :class:`~workers.providers.base.Unsendable` — spelled with the same
payload, no device token and no collapse id; the topic is the bare bundle id (it goes in the
path of ``POST /4/broadcasts/apps/<bundle>``, where a push-type suffix is refused) and the
channel goes in ``apns-channel-id``. aioapns cannot send them: :mod:`.apns_channels` does,
over its own HTTP/2 connection to the same APNs host.

Raw overrides (``content.apns``): ``payload`` is deep-merged over the payload built above
(``aps`` key by key; the tenant's keys win), ``headers`` may set ``apns-priority`` and
``apns-collapse-id`` (the model refuses the headers Brik owns: apns-id, topic, push type).

Options: ``priority`` ``high`` → 10, ``normal`` → 5; the ``ttl`` → ``apns-expiration`` (an
absolute time); the collapse id → ``apns-collapse-id``; the delivery's own id → ``apns-id``,
the same on every attempt.

**Answers** are decided on (status, reason) *pairs*, kept in named sets as sygnal does —
never on the reason string alone, which a proxy or a 5xx body can carry too. Apple's
"Handling notification responses from APNs" is the contract:

* :data:`DEAD_TOKEN_ERRORS` — 410 ``Unregistered`` (the token is inactive for the topic),
  410 ``ExpiredToken`` (the token has expired), 400 ``BadDeviceToken`` (not a token, or one for
  the other environment), 400 ``DeviceTokenNotForTopic`` (a token of another app): the token is
  dropped (the device, or only its Live Activity, push-to-start or widget token, see
  :mod:`workers.tasks.deliver`);
* :data:`TEMPORARY_STATUSES` — 429, 500, 503 whatever the reason (and a lost connection or a
  timeout): retried with the *same* ``apns-id``;
* :data:`CREDENTIAL_ERRORS` — 403 provider-token and certificate errors (and 400
  ``TopicDisallowed``; 403 ``TopicMismatch`` on broadcasts): failed, with a message saying
  which credential to fix; any other 403 too.

Anything else Apple refuses is a permanent failure with Apple's reason.

**Broadcast answers** follow the broadcast table of Apple's "Handling error responses from
APNs" (:func:`classify_broadcast`): 429, 500, 503 and no answer are retried, with the same
``apns-request-id``; :data:`CHANNEL_ERRORS` — 400 ``ChannelNotRegistered`` (the channel was
deleted, or is another app's or environment's), ``BadChannelId``, ``MissingChannelId``,
``FeatureNotEnabled`` (broadcast is off for the app) — fail for good, saying what to do; the
credential errors above fail as for devices; anything else fails with Apple's reason. A
broadcast never kills a token: it has none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, cast

from aioapns import NotificationRequest, PushType
from aioapns.exceptions import ConnectionError as APNsConnectionError
from aioapns.exceptions import MaxAttemptsExceeded

from controlplane.models.devices import TokenSlot
from controlplane.payloads import IMAGE_KEY, ActivityAlert, PushContent
from controlplane.settings import Settings
from workers.providers.apns_channels import ApnsChannels, ChannelRequestFailed
from workers.providers.apns_connection import apns_pool
from workers.providers.base import (
    Credential,
    Outcome,
    ProviderKind,
    Recipient,
    Unsendable,
    deep_merged,
)

DEAD_TOKEN_ERRORS = frozenset(
    {
        (410, "Unregistered"),
        (410, "ExpiredToken"),
        (400, "BadDeviceToken"),
        (400, "DeviceTokenNotForTopic"),
    }
)
TEMPORARY_STATUSES = frozenset({429, 500, 503})
CREDENTIAL_ERRORS = {
    (403, "ExpiredProviderToken"): "APNs says the provider token expired: check the server clock.",
    (403, "InvalidProviderToken"): "APNs refused the auth key: check key id, team id, .p8 key.",
    (403, "MissingProviderToken"): "No APNs auth key is configured for this project.",
    (403, "BadCertificate"): "APNs refused the credential.",
    (403, "BadCertificateEnvironment"): "The credential is for the other APNs environment.",
    (400, "TopicDisallowed"): "The APNs key may not send to this bundle id (topic).",
    (403, "TopicMismatch"): "The APNs key may not send to this bundle id.",  # broadcasts
}
CHANNEL_ERRORS = {
    (400, "ChannelNotRegistered"): "The broadcast channel does not exist: it was deleted, or "
    "belongs to another app or to the other APNs environment.",
    (400, "BadChannelId"): "Not a broadcast channel id APNs issued.",
    (400, "MissingChannelId"): "The broadcast had no channel id.",
    (400, "FeatureNotEnabled"): "Broadcast is off for this bundle id: turn on Broadcast "
    "Capability under Push Notifications at developer.apple.com.",
}


@dataclass(frozen=True)
class ApnsPush:
    """One APNs request: headers and payload, already built and size-checked."""

    token: str  # "" for a broadcast
    apns_id: str  # a broadcast's apns-request-id
    payload: dict[str, Any]
    push_type: str = "alert"
    topic: str | None = None
    priority: int = 10
    expiration: int | None = None  # unix seconds; None: Apple's default storage
    collapse_id: str | None = None
    attempt: int = 1  # which try this is (the sandbox's scripted tokens count them)
    channel_id: str | None = None  # a broadcast on this channel (topic: the bare bundle id)


def _to_the_device(content: PushContent) -> TokenSlot:
    return TokenSlot.DEVICE


@dataclass(frozen=True, slots=True)
class PushTypeSpelling:
    """How one kind of push is spelled for APNs, and which token it goes to."""

    header: str  # apns-push-type
    aps: Callable[[PushContent], dict[str, Any]]
    topic_suffix: str = ""  # after the app's bundle id
    priority: int | None = None  # the only priority Apple allows it; None: the push's own
    token: Callable[[PushContent], TokenSlot] = _to_the_device  # which of the device's tokens


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _shown(alert: ActivityAlert) -> dict[str, Any]:
    aps: dict[str, Any] = {"alert": _present({
        "title": alert.title, "subtitle": alert.subtitle, "body": alert.body,
    })}  # fmt: skip
    if alert.sound:
        aps["sound"] = alert.sound
    return aps


def _alert(content: PushContent) -> dict[str, Any]:
    alert = content.alert
    assert alert is not None
    aps = _shown(alert)
    aps["alert"].update(_present({
        "title-loc-key": alert.title_loc_key, "title-loc-args": alert.title_loc_args,
        "subtitle-loc-key": alert.subtitle_loc_key,
        "subtitle-loc-args": alert.subtitle_loc_args,
        "loc-key": alert.body_loc_key, "loc-args": alert.body_loc_args,
    }))  # fmt: skip
    mutable = alert.mutable_content or alert.image_url is not None
    aps.update(_present({
        "badge": alert.badge,
        "thread-id": alert.thread_id,
        "category": alert.category,
        "mutable-content": 1 if mutable else None,
        "interruption-level": alert.interruption_level,
        "relevance-score": alert.relevance_score,
        "target-content-id": alert.target_content_id,
    }))  # fmt: skip
    return aps


def _background(content: PushContent) -> dict[str, Any]:
    return {"content-available": 1}


def _live_activity(content: PushContent) -> dict[str, Any]:
    live = content.live_activity
    assert live is not None
    aps: dict[str, Any] = {
        # Stamped when the push was accepted (every attempt the same): a late retry never
        # counts as newer than an update accepted after it.
        "timestamp": live.timestamp if live.timestamp is not None else int(time.time()),
        "event": live.event,
        "content-state": live.content_state,
    }
    if live.event == "start":
        aps["attributes-type"] = live.attributes_type
        aps["attributes"] = live.attributes
        if live.channel_id is not None:
            aps["input-push-channel"] = live.channel_id  # the activity listens to its channel
    optional = {
        "dismissal-date": _unix(live.dismissal_date),
        "stale-date": _unix(live.stale_date),
        "relevance-score": live.relevance_score,
    }
    aps.update({k: v for k, v in optional.items() if v is not None})
    if live.alert is not None:
        aps.update(_shown(live.alert))
    return aps


def _activity_token(content: PushContent) -> TokenSlot:
    """To start an activity, the app's push-to-start token; to update or end one Brik addresses
    by id, that activity's own token on the device; else the device's Live Activity token."""
    live = content.live_activity
    if live is not None and live.event == "start":
        return TokenSlot.PUSH_TO_START
    if live is not None and live.activity_id is not None:
        return TokenSlot.ACTIVITY
    return TokenSlot.LIVE_ACTIVITY


def _widgets(content: PushContent) -> dict[str, Any]:
    return {"content-changed": True}


def _widget_token(content: PushContent) -> TokenSlot:
    return TokenSlot.WIDGET


PUSH_TYPES: dict[str, PushTypeSpelling] = {
    "alert": PushTypeSpelling("alert", _alert),
    "background": PushTypeSpelling("background", _background, priority=5),
    "liveactivity": PushTypeSpelling(
        "liveactivity",
        _live_activity,
        topic_suffix=".push-type.liveactivity",
        token=_activity_token,
    ),
    "widget": PushTypeSpelling(
        "widgets", _widgets, topic_suffix=".push-type.widgets", token=_widget_token
    ),
}


def token_slot(content: PushContent, platform: str) -> TokenSlot:
    """Which of an iOS device's tokens ``content`` goes to, as its push type says."""
    push_type = PUSH_TYPES.get(content.kind)
    return TokenSlot.DEVICE if push_type is None else push_type.token(content)


def apns_payload(content: PushContent) -> dict[str, Any]:
    """The JSON body Apple receives: the app's data beside ``aps``."""
    payload = {**(content.data or {}), "aps": PUSH_TYPES[content.kind].aps(content)}
    if content.alert is not None and content.alert.image_url is not None:
        payload[IMAGE_KEY] = content.alert.image_url  # for the notification service extension
    if content.apns is not None and content.apns.payload:
        payload = deep_merged(payload, content.apns.payload)  # the tenant's raw keys win
    return payload


def spell(content: PushContent, recipient: Recipient, details: Mapping[str, Any]) -> ApnsPush:
    """The APNs request for one device, or for one broadcast channel when the recipient has a
    ``channel_id`` (``details["topic"]``: the app's bundle id)."""
    push_type = PUSH_TYPES[content.kind]
    priority = push_type.priority or (5 if content.priority == "normal" else 10)
    headers = content.apns.headers if content.apns else None
    if recipient.channel_id is not None:
        chosen = headers.priority if headers and headers.priority else priority
        return _broadcast(content, recipient, str(details.get("topic")), chosen)
    return ApnsPush(
        token=recipient.token, apns_id=recipient.message_id, payload=apns_payload(content),
        push_type=push_type.header, topic=f"{details.get('topic')}{push_type.topic_suffix}",
        priority=headers.priority if headers and headers.priority else priority,
        expiration=recipient.expires_at,
        collapse_id=headers.collapse_id if headers and headers.collapse_id
        else recipient.collapse_id,
        attempt=recipient.attempt,
    )  # fmt: skip


def _broadcast(
    content: PushContent, recipient: Recipient, bundle_id: str, priority: int
) -> ApnsPush:
    live = content.live_activity
    if content.kind != "liveactivity" or live is None:
        raise Unsendable("an APNs broadcast channel carries only Live Activity updates and ends")
    if live.event == "start":
        raise Unsendable(
            "a broadcast cannot start a Live Activity: send the start to push-to-start tokens"
        )
    return ApnsPush(
        token="", channel_id=recipient.channel_id, apns_id=recipient.message_id,
        payload=apns_payload(content), push_type="liveactivity", topic=bundle_id,
        priority=priority, expiration=recipient.expires_at, attempt=recipient.attempt,
    )  # fmt: skip


def encoded_size(content: PushContent) -> int:
    """Bytes of the payload Apple would receive for ``content``."""
    return len(json.dumps(apns_payload(content), ensure_ascii=False).encode())


def _aioapns_push_type(header: str) -> PushType:
    """aioapns' name for a push type; for one it has no name for yet, a stand-in (aioapns only
    reads ``.value`` to write the header), so a new type needs no aioapns release."""
    try:
        return PushType(header)
    except ValueError:
        return cast(PushType, _Header(header))


@dataclass(frozen=True, slots=True)
class _Header:
    value: str


class ApnsProvider:
    name = "apns"

    def __init__(
        self,
        *,
        key: str,
        key_id: str,
        team_id: str,
        topic: str,
        sandbox: bool,
        settings: Settings,
        max_in_flight: int = 100,
        response_timeout: float = 30.0,
    ) -> None:
        self._pool = apns_pool(
            key=key, key_id=key_id, team_id=team_id, topic=topic, sandbox=sandbox,
            settings=settings,
        )  # fmt: skip
        self._details = {"topic": topic}
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._response_timeout = response_timeout
        self._connect_channels = partial(
            ApnsChannels, key=key, key_id=key_id, team_id=team_id, bundle_id=topic,
            sandbox=sandbox, settings=settings, timeout=response_timeout,
        )  # fmt: skip
        self._channels: ApnsChannels | None = None

    @classmethod
    def connect(cls, credential: Credential, settings: Settings) -> ApnsProvider:
        """The provider for a project's APNs credential (its .p8 key, key id, team, topic)."""
        details = credential.details
        return cls(
            key=credential.secret["key"], key_id=details["key_id"], team_id=details["team_id"],
            topic=details["topic"], sandbox=details["environment"] == "sandbox",
            settings=settings, max_in_flight=settings.delivery_in_flight_per_connection,
        )  # fmt: skip

    @property
    def channels(self) -> ApnsChannels:
        """The credential's broadcast channels (connected on first use), which broadcasts
        are sent through."""
        if self._channels is None:
            self._channels = self._connect_channels()
        return self._channels

    def request(self, content: PushContent, recipient: Recipient) -> ApnsPush:
        return cast(ApnsPush, APNS.request(content, recipient, self._details))

    async def send(self, pushes: Sequence[ApnsPush]) -> list[Outcome]:
        return list(await asyncio.gather(*(self._send_one(push) for push in pushes)))

    async def _send_one(self, push: ApnsPush) -> Outcome:
        if push.channel_id is not None:
            return await self._broadcast(push, push.channel_id)
        ttl = None if push.expiration is None else max(0, push.expiration - int(time.time()))
        request = NotificationRequest(
            device_token=push.token,
            message=push.payload,
            notification_id=push.apns_id,
            time_to_live=ttl,
            priority=push.priority,
            collapse_key=push.collapse_id,
            push_type=_aioapns_push_type(push.push_type),
            apns_topic=push.topic,
        )
        async with self._in_flight:
            try:
                result = await asyncio.wait_for(
                    self._pool.send_notification(request), self._response_timeout
                )
            except TimeoutError:
                return Outcome.retry("APNs did not answer in time")
            except (APNsConnectionError, MaxAttemptsExceeded, OSError) as exc:
                return Outcome.retry(f"APNs connection failed: {type(exc).__name__}")
        return classify(result.status, result.description)

    async def _broadcast(self, push: ApnsPush, channel_id: str) -> Outcome:
        sending = self.channels.broadcast(
            channel_id, push.payload, request_id=push.apns_id, priority=push.priority,
            expires_at=push.expiration,
        )  # fmt: skip
        async with self._in_flight:
            try:
                unique_id = await asyncio.wait_for(sending, self._response_timeout)
            except TimeoutError:
                return Outcome.retry("APNs did not answer in time")
            except ChannelRequestFailed as exc:
                return classify_broadcast(exc.status, exc.reason)
        return Outcome.delivered(provider_message_id=unique_id)

    async def close(self) -> None:
        self._pool.close()
        if self._channels is not None:
            await self._channels.close()


def classify(status: str | int, reason: str | None) -> Outcome:
    """Apple's answer (aioapns gives the status as text) as an outcome; see the docstring."""
    code = int(status) if str(status).isdigit() else 0
    if code == 200:
        return Outcome.delivered()
    reason = reason or f"HTTP {status}"
    if (code, reason) in DEAD_TOKEN_ERRORS:
        return Outcome.invalid_token(reason)
    if code in TEMPORARY_STATUSES:
        return Outcome.retry(reason)
    fix = CREDENTIAL_ERRORS.get((code, reason))
    if fix is not None or code == 403:
        return Outcome.credential_refused(f"{reason}: {fix or 'fix the credential'}")
    return Outcome.failed(reason)


def classify_broadcast(status: int, reason: str | None) -> Outcome:
    """Apple's answer to a broadcast (status 0: none came) as an outcome; see the docstring."""
    if status == 200:
        return Outcome.delivered()
    reason = reason or f"HTTP {status}"
    if status == 0 or status in TEMPORARY_STATUSES:
        return Outcome.retry(reason)
    if (status, reason) in CHANNEL_ERRORS:
        return Outcome.failed(f"{reason}: {CHANNEL_ERRORS[(status, reason)]}")
    fix = CREDENTIAL_ERRORS.get((status, reason))
    if fix is not None or status == 403:
        return Outcome.credential_refused(f"{reason}: {fix or 'fix the credential'}")
    return Outcome.failed(reason)


APNS = ProviderKind(
    name="apns",
    label="APNs",
    platforms=frozenset({"ios"}),
    kinds=frozenset(PUSH_TYPES),
    connect=ApnsProvider.connect,
    spell=spell,
    encoded_size=encoded_size,
    wire_form=apns_payload,
    tokens=token_slot,
)
