"""What Brik returns, as typed, immutable objects (and ``Target``, the ``to`` of a push).

Each type is built from the JSON the API answers with (:meth:`from_json`); fields the SDK does
not know yet are ignored, so a newer server does not break an older SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Generic, Literal, TypedDict, TypeVar

__all__ = [
    "Activity",
    "ActivityDetail",
    "ActivitySent",
    "ActivityToken",
    "BatchMessage",
    "Deleted",
    "Delivery",
    "Device",
    "DeviceToken",
    "EventBatch",
    "Export",
    "MessageRefusal",
    "MessageResult",
    "Page",
    "Push",
    "PushBatch",
    "PushDetail",
    "PushWarning",
    "RefusedEvent",
    "StateDeleted",
    "StateEntry",
    "Target",
    "UserErasure",
    "UserExport",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WidgetReload",
]

FINAL_PUSH_STATUSES = frozenset({"completed", "canceled"})
Platform = Literal["ios", "android"]
ItemT = TypeVar("ItemT")


class Target(TypedDict, total=False):
    """Who a push (or an activity's start) goes to: any mix of device ids, your user ids and
    tags (an OR of them)."""

    device_ids: list[str]
    user_ids: list[str]
    tags: list[str]


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    # Python 3.10's fromisoformat does not read a trailing "Z".
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _required_time(value: Any) -> datetime:
    parsed = _time(value)
    if parsed is None:
        raise ValueError(f"expected a timestamp, got {value!r}")
    return parsed


@dataclass(frozen=True)
class Device:
    """A registered device. ``token`` is redacted by the server (its last four characters)."""

    id: str
    platform: str
    mode: str
    token: str
    user_id: str | None
    tags: list[str]
    status: str
    has_live_activity_token: bool
    has_push_to_start_token: bool
    invalid_reason: str | None
    invalidated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    created: bool | None = None  # register(): True when this call added the device
    has_widget_push_token: bool = False  # iOS 26+: WidgetKit push updates reach it

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Device:
        return cls(
            id=body["id"],
            platform=body["platform"],
            mode=body["mode"],
            token=body["token"],
            user_id=body.get("user_id"),
            tags=list(body.get("tags") or []),
            status=body["status"],
            has_live_activity_token=bool(body.get("has_live_activity_token")),
            has_push_to_start_token=bool(body.get("has_push_to_start_token")),
            invalid_reason=body.get("invalid_reason"),
            invalidated_at=_time(body.get("invalidated_at")),
            created_at=_required_time(body["created_at"]),
            updated_at=_required_time(body["updated_at"]),
            created=body.get("created"),
            has_widget_push_token=bool(body.get("has_widget_push_token")),
        )


@dataclass(frozen=True)
class PushWarning:
    """Why devices a send (or an activity's change) names get nothing: ``code``
    (``no_recipients``, ``no_live_activity_token``, ``no_push_to_start_token``,
    ``no_widget_push_token``, …) and a
    ``message`` saying how many and why."""

    code: str
    message: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PushWarning:
        return cls(code=str(body.get("code")), message=str(body.get("message", "")))


@dataclass(frozen=True)
class Push:
    """A push as accepted (``send``) or listed: its id, status and number of recipients.

    ``warnings`` (on an accepted push) say why devices it names were left out — all of them,
    when ``recipients`` is 0; the SDK also logs each on the ``brik`` logger.
    """

    id: str
    status: str
    recipients: int
    warnings: list[PushWarning] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Push:
        warnings = [PushWarning.from_json(w) for w in body.get("warnings") or []]
        return cls(id=body["id"], status=body["status"], recipients=int(body["recipients"]),
                   warnings=warnings)  # fmt: skip


class DeviceToken(TypedDict):
    """A raw device token and its platform (``"ios"`` or ``"android"``)."""

    platform: str
    token: str


class BatchMessage(TypedDict, total=False):
    """One message of ``pushes.send_batch``: the fields ``POST /v1/pushes`` takes, with ``to``
    (registered devices) or ``device_token`` (a raw token, registered on the way if new).
    ``kind`` may be left out: ``"alert"`` with an alert, else ``"background"``."""

    to: Target
    device_token: DeviceToken
    kind: str
    alert: Mapping[str, Any]
    data: Mapping[str, Any]
    live_activity: Mapping[str, Any]
    priority: str
    ttl: int
    collapse_id: str
    send_at: datetime | str
    idempotency_key: str
    apns: Mapping[str, Any]
    android: Mapping[str, Any]


@dataclass(frozen=True)
class MessageRefusal:
    """Why one message of a batch was refused: the error ``POST /v1/pushes`` would have
    answered for it (``param`` names the field: ``messages.3.alert.title``)."""

    type: str
    code: str
    message: str
    param: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MessageRefusal:
        return cls(type=str(body["type"]), code=str(body["code"]), message=str(body["message"]),
                   param=body.get("param"))  # fmt: skip


@dataclass(frozen=True)
class MessageResult:
    """One message's result: ``push`` when accepted (``replayed`` when this is the first
    answer for its idempotency key), ``error`` when refused."""

    index: int
    push: Push | None
    error: MessageRefusal | None
    replayed: bool = False

    @property
    def accepted(self) -> bool:
        return self.push is not None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MessageResult:
        push, error = body.get("push"), body.get("error")
        return cls(
            index=int(body["index"]),
            push=Push.from_json(push) if push is not None else None,
            error=MessageRefusal.from_json(error) if error is not None else None,
            replayed=bool(body.get("replayed")),
        )


@dataclass(frozen=True)
class PushBatch:
    """The answer to ``pushes.send_batch``: one result per message, in order."""

    accepted: int
    refused: int
    results: list[MessageResult]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PushBatch:
        return cls(accepted=int(body["accepted"]), refused=int(body["refused"]),
                   results=[MessageResult.from_json(r) for r in body["results"]])  # fmt: skip


@dataclass(frozen=True)
class WidgetReload(Push):
    """A widget reload as accepted (``widgets.reload``): the push, the widget kind, and the
    state entry its data was stored as (``widget:{kind}``; None when no data was given)."""

    widget_kind: str = ""
    state: StateEntry | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WidgetReload:
        push = Push.from_json(body)
        entry = body.get("state")
        return cls(
            id=push.id, status=push.status, recipients=push.recipients, warnings=push.warnings,
            widget_kind=str(body["widget_kind"]),
            state=StateEntry.from_json(entry) if isinstance(entry, dict) else None,
        )  # fmt: skip


@dataclass(frozen=True)
class PushDetail:
    """A push with its deliveries counted by status (``retrieve``, ``cancel``, ``stream``)."""

    id: str
    mode: str
    kind: str
    status: str
    recipients: int
    deliveries: dict[str, int]
    content: dict[str, Any]
    to: dict[str, Any]
    send_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    canceled_at: datetime | None

    @property
    def final(self) -> bool:
        """No delivery of it will change any more."""
        return self.status in FINAL_PUSH_STATUSES

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PushDetail:
        return cls(
            id=body["id"],
            mode=body["mode"],
            kind=body["kind"],
            status=body["status"],
            recipients=int(body["recipients"]),
            deliveries={str(k): int(v) for k, v in (body.get("deliveries") or {}).items()},
            content=dict(body.get("content") or {}),
            to=dict(body.get("to") or {}),
            send_at=_time(body.get("send_at")),
            created_at=_required_time(body["created_at"]),
            completed_at=_time(body.get("completed_at")),
            canceled_at=_time(body.get("canceled_at")),
        )


@dataclass(frozen=True)
class Delivery:
    """One device's delivery of a push: its status, why, and how many attempts it took."""

    id: str
    device_id: str | None
    platform: str
    provider: str
    status: str
    reason: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    push_id: str | None = None  # in an activity's last_deliveries: the push it belongs to

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Delivery:
        return cls(
            id=body["id"],
            device_id=body.get("device_id"),
            platform=body["platform"],
            provider=body["provider"],
            status=body["status"],
            reason=body.get("reason"),
            attempts=int(body.get("attempts") or 0),
            created_at=_required_time(body["created_at"]),
            sent_at=_time(body.get("sent_at")),
            completed_at=_time(body.get("completed_at")),
            push_id=body.get("push_id"),
        )


@dataclass(frozen=True)
class Deleted:
    object: str
    id: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Deleted:
        return cls(object=body["object"], id=body["id"])


@dataclass(frozen=True)
class StateEntry:
    """A state entry (``brik.state``): its JSON ``value``, and the ``etag`` to pass back as
    ``if_match`` so a write applies only to the version it was based on. ``version`` counts
    the entry's writes; ``size_bytes`` (key plus value) is what it counts against the plan."""

    key: str
    value: Any
    public: bool
    etag: str
    version: int
    size_bytes: int
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    created: bool | None = None  # set(): True when this write created the entry

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> StateEntry:
        return cls(
            key=body["key"],
            value=body["value"],
            public=bool(body["public"]),
            etag=body["etag"],
            version=int(body["version"]),
            size_bytes=int(body["size_bytes"]),
            expires_at=_time(body.get("expires_at")),
            created_at=_required_time(body["created_at"]),
            updated_at=_required_time(body["updated_at"]),
            created=body.get("created"),
        )


@dataclass(frozen=True)
class StateDeleted:
    """What ``brik.state.delete`` removed."""

    key: str
    deleted: bool = True

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> StateDeleted:
        return cls(key=body["key"], deleted=bool(body.get("deleted", True)))


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of a list; pass ``starting_after=page.data[-1].id`` for the next."""

    data: list[ItemT] = field(default_factory=list)
    has_more: bool = False


@dataclass(frozen=True)
class Activity:
    """A Live Activity addressed by id (``act_…``): what it shows and where it is in its
    lifecycle — ``status`` is ``starting`` (push-to-start sent, no activity token reported yet),
    ``active``, ``stale``, ``ended`` or ``dismissed``. ``timestamp`` is the ``aps.timestamp`` of
    its newest change (unix seconds): every change carries a larger one."""

    id: str
    mode: str
    activity_type: str
    attributes: dict[str, Any]
    content_state: dict[str, Any]
    status: str
    started_by: str  # "server" (activities.start) or "app" (activities.register)
    user_id: str | None
    channel_id: str | None
    stale_date: datetime | None
    dismissal_date: datetime | None
    relevance_score: float | None
    timestamp: int
    end_reason: str | None  # "ended" (by you) or "apple_limit" (8 hours after it started)
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @staticmethod
    def fields_of(body: dict[str, Any]) -> dict[str, Any]:
        score = body.get("relevance_score")
        return {
            "id": body["id"],
            "mode": body["mode"],
            "activity_type": body["activity_type"],
            "attributes": dict(body.get("attributes") or {}),
            "content_state": dict(body.get("content_state") or {}),
            "status": body["status"],
            "started_by": body["started_by"],
            "user_id": body.get("user_id"),
            "channel_id": body.get("channel_id"),
            "stale_date": _time(body.get("stale_date")),
            "dismissal_date": _time(body.get("dismissal_date")),
            "relevance_score": None if score is None else float(score),
            "timestamp": int(body["timestamp"]),
            "end_reason": body.get("end_reason"),
            "created_at": _required_time(body["created_at"]),
            "updated_at": _required_time(body["updated_at"]),
            "ended_at": _time(body.get("ended_at")),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Activity:
        return cls(**cls.fields_of(body))


@dataclass(frozen=True)
class ActivitySent(Activity):
    """An activity after ``start``, ``update`` or ``end``, with the push carrying the change
    (``push_id``, for ``brik.pushes.retrieve`` / ``stream``; None when nothing was sent) and how
    many devices it goes to. ``warnings`` say why devices were left out (``no_recipients``,
    ``no_push_to_start_token``, ``token_pending``, ``token_invalid``, ``device_invalid``); the
    SDK also logs each on the ``brik`` logger."""

    push_id: str | None = None
    recipients: int = 0
    warnings: list[PushWarning] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ActivitySent:
        return cls(
            **Activity.fields_of(body),
            push_id=body.get("push_id"),
            recipients=int(body["recipients"]),
            warnings=[PushWarning.from_json(w) for w in body.get("warnings") or []],
        )


@dataclass(frozen=True)
class ActivityToken:
    """An activity's push token on one device: ``token`` is redacted (``…`` and its last four
    characters; None on Android, where the device's FCM token reaches the activity), ``status``
    is ``pending`` (not reported yet), ``active`` or ``invalid`` (Apple refused it)."""

    device_id: str
    platform: str
    token: str | None
    status: str
    invalid_reason: str | None
    updated_at: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ActivityToken:
        return cls(
            device_id=body["device_id"],
            platform=body["platform"],
            token=body.get("token"),
            status=body["status"],
            invalid_reason=body.get("invalid_reason"),
            updated_at=_required_time(body["updated_at"]),
        )


@dataclass(frozen=True)
class ActivityDetail(Activity):
    """An activity with its token on each device and its 20 newest deliveries, newest first
    (each with its ``push_id``)."""

    tokens: list[ActivityToken] = field(default_factory=list)
    last_deliveries: list[Delivery] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ActivityDetail:
        return cls(
            **Activity.fields_of(body),
            tokens=[ActivityToken.from_json(t) for t in body.get("tokens") or []],
            last_deliveries=[Delivery.from_json(d) for d in body.get("last_deliveries") or []],
        )


@dataclass(frozen=True)
class RefusedEvent:
    """An analytics event the server refused (the others of its batch were kept): its
    position in the batch, its ``id``, and why (``param`` names the field, as in errors)."""

    index: int
    id: str | None
    code: str
    param: str | None
    message: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RefusedEvent:
        return cls(
            index=int(body["index"]), id=body.get("id"), code=str(body["code"]),
            param=body.get("param"), message=str(body.get("message", "")),
        )  # fmt: skip


@dataclass(frozen=True)
class EventBatch:
    """What the server did with the events sent (``events.flush``, ``events.send``): how many
    it kept — each counted once however often it is sent — and a :class:`RefusedEvent` for
    each it refused."""

    received: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: list[RefusedEvent] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> EventBatch:
        return cls(
            received=int(body["received"]), accepted=int(body["accepted"]),
            rejected=int(body["rejected"]),
            errors=[RefusedEvent.from_json(error) for error in body.get("errors") or []],
        )  # fmt: skip

    def __add__(self, other: EventBatch) -> EventBatch:
        """Both results as one: ``other``'s indexes follow on from this one's events."""
        shifted = [replace(error, index=error.index + self.received) for error in other.errors]
        return EventBatch(
            received=self.received + other.received, accepted=self.accepted + other.accepted,
            rejected=self.rejected + other.rejected, errors=[*self.errors, *shifted],
        )  # fmt: skip


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where a project's events go (``whk_…``), in the key's mode. ``type`` is ``webhook``
    (Brik's signed JSON event), ``slack`` or ``discord`` (a message for people; their URLs are
    shown cut short). ``events`` are names, families (``billing.*``) or ``*``. ``secret``
    (``whsec_…``) is set only in what ``create`` and ``rotate_secret`` return: store it then.
    ``disabled_reason`` says why Brik (sustained failure) or you disabled it."""

    id: str
    mode: str
    type: str
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WebhookEndpoint:
        health = body.get("health") or {}
        return cls(
            id=body["id"],
            mode=body["mode"],
            type=body["type"],
            url=body["url"],
            description=body.get("description"),
            events=list(body["events"]),
            enabled=bool(body["enabled"]),
            disabled_reason=body.get("disabled_reason"),
            consecutive_failures=int(health.get("consecutive_failures") or 0),
            failing_since=_time(health.get("failing_since")),
            last_success_at=_time(health.get("last_success_at")),
            previous_secret_expires_at=_time(body.get("previous_secret_expires_at")),
            created_at=_required_time(body["created_at"]),
            updated_at=_required_time(body["updated_at"]),
            secret=body.get("secret"),
        )


@dataclass(frozen=True)
class WebhookDelivery:
    """One event sent (or being sent) to one endpoint: ``status`` is ``waiting`` (behind an
    earlier event about the same object), ``queued``, ``sending``, ``succeeded`` or ``failed``;
    the last attempt's ``response_status``, ``latency_ms``, ``response_excerpt`` and ``error``.
    ``event`` (the event as sent) is set by ``webhooks.delivery``."""

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    trigger: str  # "event", "test" or "resend"
    status: str
    attempts: int
    next_attempt_at: datetime | None
    response_status: int | None
    response_excerpt: str | None
    latency_ms: int | None
    error: str | None
    created_at: datetime
    completed_at: datetime | None
    event: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WebhookDelivery:
        status = body.get("response_status")
        latency = body.get("latency_ms")
        event = body.get("event")
        return cls(
            id=body["id"],
            endpoint_id=body["endpoint_id"],
            event_id=body["event_id"],
            event_type=body["event_type"],
            trigger=body["trigger"],
            status=body["status"],
            attempts=int(body.get("attempts") or 0),
            next_attempt_at=_time(body.get("next_attempt_at")),
            response_status=None if status is None else int(status),
            response_excerpt=body.get("response_excerpt"),
            latency_ms=None if latency is None else int(latency),
            error=body.get("error"),
            created_at=_required_time(body["created_at"]),
            completed_at=_time(body.get("completed_at")),
            event=dict(event) if isinstance(event, dict) else None,
        )


@dataclass(frozen=True)
class WebhookEvent:
    """An event Brik sent to your endpoint, once its signature is verified
    (``brik.webhooks.verify_signature``): ``type`` (``push.completed`` …), when it was
    ``created``, ``livemode``, and ``data`` — the object it is about (the event's
    ``data.object``). Deduplicate by ``id``: an event may come more than once."""

    id: str
    type: str
    created: datetime
    livemode: bool
    project_id: str
    data: dict[str, Any]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WebhookEvent:
        inner = body["data"]["object"]
        if not isinstance(inner, dict):
            raise TypeError("data.object is not an object")
        return cls(
            id=str(body["id"]),
            type=str(body["type"]),
            created=datetime.fromtimestamp(int(body["created"]), timezone.utc),
            livemode=bool(body["livemode"]),
            project_id=str(body["project_id"]),
            data=inner,
        )


@dataclass(frozen=True)
class RealtimeMessage:
    """A message received on a realtime channel: ``id`` (give it back as ``last_event_id``
    to resume after it), ``event`` (``message`` unless published with a name) and ``data``,
    the JSON as published."""

    id: str
    event: str
    data: Any


@dataclass(frozen=True)
class RealtimeToken:
    """A subscribe token for private channels (``realtime.create_token``): hand ``token`` to
    the app, which passes it to ``realtime.subscribe``."""

    token: str
    channels: list[str]
    expires_at: datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RealtimeToken:
        return cls(
            token=str(body["token"]),
            channels=[str(channel) for channel in body["channels"]],
            expires_at=_required_time(body["expires_at"]),
        )


@dataclass(frozen=True)
class Export:
    """A project export (``exp_…``) in the key's mode: ``status`` ``queued``, ``running``,
    ``succeeded`` (``download_url`` is a signed link to the archive until ``expires_at``),
    ``failed`` or ``expired``. ``counts`` are the records per file of the archive."""

    id: str
    mode: str
    status: str
    attempts: int
    counts: dict[str, int]
    size_bytes: int | None
    sha256: str | None
    error: str | None
    download_url: str | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Export:
        return cls(
            id=str(body["id"]), mode=str(body["mode"]), status=str(body["status"]),
            attempts=int(body["attempts"]),
            counts={str(k): int(v) for k, v in (body.get("counts") or {}).items()},
            size_bytes=body.get("size_bytes"), sha256=body.get("sha256"),
            error=body.get("error"), download_url=body.get("download_url"),
            created_at=_required_time(body["created_at"]),
            completed_at=_time(body.get("completed_at")), expires_at=_time(body.get("expires_at")),
        )  # fmt: skip


@dataclass(frozen=True)
class UserExport:
    """Everything of one end user's in the key's project and mode, as records (docs/export.md):
    ``devices`` (push tokens in full), ``activities``, ``activity_tokens``, ``state``,
    ``events`` and ``deliveries``."""

    user_id: str
    mode: str
    exported_at: datetime
    devices: list[dict[str, Any]]
    activities: list[dict[str, Any]]
    activity_tokens: list[dict[str, Any]]
    state: list[dict[str, Any]]
    events: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> UserExport:
        def records(name: str) -> list[dict[str, Any]]:
            found = body[name]
            if not isinstance(found, list):
                raise TypeError(f"{name} is not a list")
            return [dict(item) for item in found]

        return cls(
            user_id=str(body["user_id"]), mode=str(body["mode"]),
            exported_at=_required_time(body["exported_at"]), devices=records("devices"),
            activities=records("activities"), activity_tokens=records("activity_tokens"),
            state=records("state"), events=records("events"), deliveries=records("deliveries"),
        )  # fmt: skip


@dataclass(frozen=True)
class UserErasure:
    """What erasing an end user removed or changed, by kind (all zero: nothing was left)."""

    user_id: str
    mode: str
    erased: dict[str, int]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> UserErasure:
        erased = body["erased"]
        if not isinstance(erased, dict):
            raise TypeError("erased is not an object")
        return cls(
            user_id=str(body["user_id"]),
            mode=str(body["mode"]),
            erased={str(k): int(v) for k, v in erased.items()},
        )
