"""``/v1/activities``: Live Activities addressed by id — start, update and end them by id.

The server (secret key, ``pushes:write``) starts an activity for users or devices
(``POST /v1/activities``), then updates and ends it by id; each change is a push Brik tracks like
any other (``push_id`` in the answer, ``/v1/pushes/{id}`` for its deliveries), honours
``Idempotency-Key``, and takes its quota. The app (a publishable key is enough: ``devices:write``)
registers an activity it started itself (``POST /v1/activities/register``) and reports each
activity's push token, and its rotations (``POST /v1/activities/{id}/tokens``). How the newest
state wins and the lifecycle: :mod:`controlplane.activities`; the reference: docs/activities.md.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from tortoise.expressions import Q, Subquery

from controlplane import activities
from controlplane.activities import BroadcastChannels, Change, ChannelUnavailable, Sent
from controlplane.api.devices import APNS_TOKEN_PATTERN, Tag
from controlplane.api.fields import Moment, ObjectId
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.pushes import DeliveryOut, sender_of
from controlplane.api.routing import Auth, Call, Operation
from controlplane.errors import InvalidRequest, NotFound, ServiceUnavailable
from controlplane.models import (
    Activity,
    ActivityStatus,
    ActivityToken,
    ActivityTokenStatus,
    Delivery,
    Device,
    DeviceStatus,
    DeviceTag,
    KeyMode,
    Platform,
)
from controlplane.payloads import ActivityAlert
from controlplane.realtime.messages import History
from controlplane.validation import WHOLE_NUMBER, field_error

logger = logging.getLogger("brik.activities")
_APNS_TOKEN = re.compile(APNS_TOKEN_PATTERN.strip("^$"))

ActivityType = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,199}$"),
    Field(description="The app's ActivityAttributes type name, as Swift spells it."),
]
JsonObject = Annotated[dict[str, Any], Field(max_length=200)]
Ttl = Annotated[int, Field(ge=0, le=28 * 24 * 3600, description="Seconds."), WHOLE_NUMBER]
Score = Annotated[float, Field(ge=0, allow_inf_nan=False)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ApnsToken = Annotated[
    str,
    StringConstraints(pattern=APNS_TOKEN_PATTERN),
    Field(description="The activity's APNs push token (iOS), 64 to 200 hex digits."),
]


class ActivityRecipients(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": "At least one of device_ids, user_ids or tags, not empty.",
            "anyOf": [
                {"required": [name], "properties": {name: {"minItems": 1}}}
                for name in ("device_ids", "user_ids", "tags")
            ],
        },
    )
    device_ids: list[ObjectId] = Field(default_factory=list, max_length=1000)
    user_ids: list[UserId] = Field(default_factory=list, max_length=1000)
    tags: list[Tag] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _names_someone(self) -> ActivityRecipients:
        if not (self.device_ids or self.user_ids or self.tags):
            raise ValueError("name at least one of device_ids, user_ids or tags")
        return self


class ActivityStart(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"broadcast": {"const": True}}, "required": ["broadcast"]},
                    "then": {},
                    "else": {"required": ["to"], "properties": {"to": {"type": "object"}}},
                },
                {
                    "if": {
                        "properties": {"broadcast_keeps_latest": {"const": True}},
                        "required": ["broadcast_keeps_latest"],
                    },
                    "then": {
                        "properties": {"broadcast": {"const": True}},
                        "required": ["broadcast"],
                    },
                },
            ]
        },
    )
    activity_type: ActivityType
    attributes: JsonObject = Field(default_factory=dict, description="The static attributes.")
    content_state: JsonObject = Field(description="The first content state.")
    to: ActivityRecipients | None = Field(
        default=None, description="Who gets a push-to-start; optional for a broadcast activity "
        "(apps subscribe to its channel themselves).",
    )  # fmt: skip
    broadcast: bool = Field(
        default=False,
        description="iOS 18: updates go once to an APNs broadcast channel Brik opens for the "
        "activity (`channel_id`), not to each device's token.",
    )
    broadcast_keeps_latest: bool = Field(
        default=False,
        description="The channel's storage policy: APNs keeps the newest update for devices "
        "offline (else nothing is stored, and frequent updates have a higher budget).",
    )
    alert: ActivityAlert | None = None
    stale_date: Moment | None = None
    relevance_score: Score | None = None
    priority: Literal[5, 10] = Field(default=10, description="APNs priority of the start.")
    ttl: Ttl | None = None

    @model_validator(mode="after")
    def _names_someone_unless_broadcast(self) -> ActivityStart:
        if self.to is None and not self.broadcast:
            raise field_error("to", "name device_ids or user_ids (or start a broadcast)")
        if self.broadcast_keeps_latest and not self.broadcast:
            raise field_error("broadcast_keeps_latest", "only for a broadcast activity")
        return self


class ActivityRegistration(BaseModel):
    """An activity the app started itself (``Activity.request``), registered with its token."""

    model_config = ConfigDict(extra="forbid")
    device_id: ObjectId = Field(description="The device the app registered (POST /v1/devices).")
    token: ApnsToken | None = Field(
        default=None, description="iOS: the activity's push token (required); Android: none."
    )
    activity_type: ActivityType
    attributes: JsonObject = Field(default_factory=dict)
    content_state: JsonObject
    stale_date: Moment | None = None
    relevance_score: Score | None = None


class ActivityTokenReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: ObjectId
    token: ApnsToken | None = Field(
        default=None, description="iOS: the activity's push token (required); Android: none."
    )


class ActivityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_state: JsonObject
    alert: ActivityAlert | None = None
    stale_date: Moment | None = None
    relevance_score: Score | None = None
    priority: Literal[5, 10] = Field(
        default=5, description="APNs priority: 5 (default; Apple throttles frequent 10s) or 10."
    )
    ttl: Ttl | None = None


class ActivityEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    content_state: JsonObject | None = Field(default=None, description="The final state.")
    alert: ActivityAlert | None = None
    dismissal_date: Moment | None = Field(
        default=None,
        description="When it leaves the Lock Screen (at most 4 hours on); in the past: now.",
    )
    priority: Literal[5, 10] = 10
    ttl: Ttl | None = None


class ActivityOut(BaseModel):
    object: Literal["activity"] = "activity"
    id: str
    mode: KeyMode
    activity_type: str
    attributes: dict[str, Any]
    content_state: dict[str, Any]
    status: ActivityStatus
    started_by: Literal["server", "app"]
    user_id: str | None
    channel_id: str | None = Field(description="Its APNs broadcast channel, if it has one.")
    stale_date: datetime | None
    dismissal_date: datetime | None
    relevance_score: float | None
    timestamp: int = Field(description="aps.timestamp of its newest update (unix seconds).")
    end_reason: Literal["ended", "apple_limit"] | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, row: Activity, now: datetime | None = None) -> ActivityOut:
        status = activities.status_at(row, now or datetime.now(UTC))
        return cls(
            id=row.id, mode=row.mode, activity_type=row.activity_type, attributes=row.attributes,
            content_state=row.content_state, status=status,
            started_by=row.started_by,  # type: ignore[arg-type]
            user_id=row.user_id, channel_id=row.channel_id, stale_date=row.stale_date,
            dismissal_date=row.dismissal_date, relevance_score=row.relevance_score,
            timestamp=row.last_timestamp,
            end_reason=row.end_reason or ("apple_limit" if status is not row.status
                                          and status in _CLOSED else None),  # type: ignore[arg-type]
            created_at=row.created_at, updated_at=row.updated_at, ended_at=row.ended_at,
        )  # fmt: skip


_CLOSED = (ActivityStatus.ENDED, ActivityStatus.DISMISSED)


class ActivityWarning(BaseModel):
    code: Literal[
        "no_recipients", "no_push_to_start_token", "token_pending", "token_invalid",
        "device_invalid",
    ]  # fmt: skip
    message: str


_WARNINGS = {
    "no_push_to_start_token": "iOS {n} skipped: no push-to-start token registered (iOS 17.2+; "
    "the app sends it as `push_to_start_token` to POST /v1/devices)",
    "token_pending": "{n} skipped: the app has not reported the activity's token there yet "
    "(POST /v1/activities/{{id}}/tokens)",
    "token_invalid": "{n} skipped: Apple refused the activity's token there",
    "device_invalid": "{n} skipped: a provider refused the device",
}


class ActivitySent(ActivityOut):
    push_id: str | None = Field(description="The push carrying this change (GET /v1/pushes/{id}).")
    recipients: int
    warnings: list[ActivityWarning] = Field(default_factory=list)

    @classmethod
    def of_sent(cls, sent: Sent) -> ActivitySent:
        warnings = []
        recipients = sent.push.recipients if sent.push is not None else 0
        if not recipients:
            warnings.append(ActivityWarning(
                code="no_recipients", message="No device can receive this change now.",
            ))  # fmt: skip
        for code, n in sorted(sent.skipped.items()):
            devices = "1 device was" if n == 1 else f"{n} devices were"
            warnings.append(ActivityWarning(
                code=code, message=_WARNINGS[code].format(n=devices),  # type: ignore[arg-type]
            ))  # fmt: skip
        return cls(
            **ActivityOut.of(sent.activity).model_dump(),
            push_id=None if sent.push is None else sent.push.id, recipients=recipients,
            warnings=warnings,
        )  # fmt: skip


class ActivityTokenOut(BaseModel):
    object: Literal["activity_token"] = "activity_token"
    device_id: str
    platform: Platform
    token: str | None = Field(description="Redacted: the last four characters (iOS).")
    status: ActivityTokenStatus
    invalid_reason: str | None
    updated_at: datetime

    @classmethod
    def of(cls, row: ActivityToken) -> ActivityTokenOut:
        return cls(
            device_id=row.device_id,  # type: ignore[attr-defined]
            platform=Platform(row.platform),
            token=None if row.token_last_four is None else f"…{row.token_last_four}",
            status=row.status, invalid_reason=row.invalid_reason, updated_at=row.updated_at,
        )  # fmt: skip


class ActivityDetail(ActivityOut):
    tokens: list[ActivityTokenOut]
    last_deliveries: list[DeliveryOut] = Field(description="The 20 newest, newest first.")


class ActivityListQuery(ListQuery):
    status: ActivityStatus | None = None
    activity_type: ActivityType | None = None
    user_id: UserId | None = None
    device_id: ObjectId | None = Field(
        default=None, description="Activities with a token on this device."
    )


async def _recipients(call: Call, to: ActivityRecipients) -> list[Device]:
    wanted = Q()
    if to.device_ids:
        wanted |= Q(id__in=to.device_ids)
    if to.user_ids:
        wanted |= Q(user_id__in=to.user_ids)
    if to.tags:
        tagged = DeviceTag.filter(tag__in=to.tags).values("device_id")
        wanted |= Q(id__in=Subquery(tagged))
    return await call.tenant.query(Device).filter(wanted, status=DeviceStatus.ACTIVE)


async def _device(call: Call, device_id: str, token: str | None) -> Device:
    device = await call.tenant.query(Device).get_or_none(id=device_id)
    if device is None:
        raise NotFound(
            f"No device '{device_id}' registered with this key's project and mode "
            "(POST /v1/devices first).", param="device_id",
        )  # fmt: skip
    if device.platform is Platform.IOS and token is None:
        raise InvalidRequest(
            "token: an iOS activity is reached through its own push token; send the one "
            "ActivityKit gave the app (activity.pushTokenUpdates).",
            code="parameter_invalid", param="token",
        )  # fmt: skip
    if device.platform is Platform.ANDROID and token is not None:
        raise InvalidRequest(
            "token: an Android activity is reached through the device's FCM token; leave it "
            "out.", code="parameter_invalid", param="token",
        )  # fmt: skip
    return device


async def _open_channel(call: Call, keeps_latest: bool) -> str:
    """A new APNs broadcast channel for the project (test mode: a sandbox one)."""
    channels: BroadcastChannels = call.request.app.state.channels
    project = call.tenant.project
    assert project is not None
    try:
        return await channels.open(
            project.id, call.keyring, test_mode=call.key.mode is KeyMode.TEST,
            keep_latest=keeps_latest,
        )  # fmt: skip
    except ChannelUnavailable as exc:
        if exc.temporary:
            raise ServiceUnavailable(f"{exc} Nothing was started; try again shortly.",
                                     code="broadcast_unavailable") from None  # fmt: skip
        raise InvalidRequest(str(exc), code="broadcast_unavailable", param="broadcast") from None


async def _close_channel(call: Call, channel_id: str) -> None:
    """Give back a channel opened for a start that did not commit — refused (the quota, a
    credential missing, too large) or failed at the commit — unless an activity holds it
    after all (a commit whose answer was lost). Never an error: the start's is the one told."""
    channels: BroadcastChannels = call.request.app.state.channels
    project = call.tenant.project
    assert project is not None
    if await Activity.filter(project_id=project.id, channel_id=channel_id).exists():
        return
    try:
        await channels.close(
            project.id, channel_id, call.keyring, test_mode=call.key.mode is KeyMode.TEST
        )
    except ChannelUnavailable as exc:
        logger.warning("broadcast channel %s of a failed start not deleted: %s", channel_id, exc)


async def start_activity(call: Call) -> ActivitySent:
    body = call.body_as(ActivityStart)
    to = body.to or ActivityRecipients.model_construct(device_ids=[], user_ids=[], tags=[])
    devices = await _recipients(call, to) if body.to is not None else []
    user_id = to.user_ids[0] if len(to.user_ids) == 1 and not (to.device_ids or to.tags) else None
    channel_id = None
    if body.broadcast:
        opened = channel_id = await _open_channel(call, body.broadcast_keeps_latest)
        # Opened at Apple before anything commits. If the start does not commit (refused, or
        # the commit fails), nothing would ever close the channel — not even deleting the
        # project, which closes its activities' — and it would count against the app's 10,000
        # for good: delete it again.
        call.after_rollback.append(lambda: _close_channel(call, opened))
    sent = await activities.start(
        sender_of(call), activity_type=body.activity_type, attributes=body.attributes,
        content_state=body.content_state, devices=devices,
        change=Change(alert=body.alert, stale_date=body.stale_date,
                      relevance_score=body.relevance_score, priority=body.priority,
                      ttl=body.ttl),
        user_id=user_id, channel_id=channel_id, now=datetime.now(UTC),
    )  # fmt: skip
    return ActivitySent.of_sent(sent)


async def register_activity(call: Call) -> ActivityOut:
    body = call.body_as(ActivityRegistration)
    device = await _device(call, body.device_id, body.token)
    activity = await activities.register(
        sender_of(call), call.keyring, device=device, token=body.token,
        activity_type=body.activity_type, attributes=body.attributes,
        content_state=body.content_state, stale_date=body.stale_date,
        relevance_score=body.relevance_score, now=datetime.now(UTC),
    )  # fmt: skip
    return ActivityOut.of(activity)


async def report_activity_token(call: Call) -> ActivityTokenOut:
    body = call.body_as(ActivityTokenReport)
    activity = await activities.lock(sender_of(call), call.row(Activity, "activity_id").id)
    device = await _device(call, body.device_id, body.token)
    row = await activities.report_token(
        activity, device, body.token, call.keyring, datetime.now(UTC)
    )
    return ActivityTokenOut.of(row)


def _announce_after_commit(call: Call, activity: Activity, event: Literal["update", "end"]) -> None:
    """On ``activity:{id}`` once committed (a rolled-back change is never announced)."""
    redis = call.request.app.state.redis
    history = History.of(call.settings)
    call.after_commit.append(lambda: activities.announce(redis, history, activity, event))


async def update_activity(call: Call) -> ActivitySent:
    body = call.body_as(ActivityUpdate)
    sender = sender_of(call)
    activity = await activities.lock(sender, call.row(Activity, "activity_id").id)
    what = Change(
        content_state=body.content_state, alert=body.alert, stale_date=body.stale_date,
        relevance_score=body.relevance_score, priority=body.priority, ttl=body.ttl,
    )  # fmt: skip
    sent = await activities.change(sender, activity, "update", what, datetime.now(UTC))
    _announce_after_commit(call, sent.activity, "update")
    return ActivitySent.of_sent(sent)


async def end_activity(call: Call) -> ActivitySent:
    body = call.body_as(ActivityEnd)
    sender = sender_of(call)
    activity = await activities.lock(sender, call.row(Activity, "activity_id").id)
    what = Change(
        content_state=body.content_state, alert=body.alert, dismissal_date=body.dismissal_date,
        priority=body.priority, ttl=body.ttl,
    )  # fmt: skip
    sent = await activities.change(sender, activity, "end", what, datetime.now(UTC))
    _announce_after_commit(call, sent.activity, "end")
    return ActivitySent.of_sent(sent)


async def list_activities(call: Call) -> Page[ActivityOut]:
    params = call.query_as(ActivityListQuery)
    query = call.tenant.query(Activity)
    if params.status is not None:
        query = query.filter(status=params.status)
    if params.activity_type is not None:
        query = query.filter(activity_type=params.activity_type)
    if params.user_id is not None:
        on_their_devices = ActivityToken.filter(device__user_id=params.user_id).values(
            "activity_id"
        )
        query = query.filter(Q(user_id=params.user_id) | Q(id__in=Subquery(on_their_devices)))
    if params.device_id is not None:
        on_the_device = ActivityToken.filter(device_id=params.device_id).values("activity_id")
        query = query.filter(id__in=Subquery(on_the_device))
    now = datetime.now(UTC)
    return await paginate(query, params, lambda row: ActivityOut.of(row, now))


async def retrieve_activity(call: Call) -> ActivityDetail:
    activity = call.row(Activity, "activity_id")
    tokens = await ActivityToken.filter(activity_id=activity.id).order_by("id")
    deliveries = await (
        Delivery.filter(push__activity_id=activity.id).order_by("-created_at", "-id").limit(20)
    )
    return ActivityDetail(
        **ActivityOut.of(activity).model_dump(),
        tokens=[ActivityTokenOut.of(token) for token in tokens],
        last_deliveries=[
            DeliveryOut.of(row) for row in deliveries
        ],
    )  # fmt: skip


KEY = Auth.API_KEY
ACTIVITY = "/v1/activities/{activity_id}"
_ENDED = {409: "The activity has ended (`activity_ended`)"}
operations = [
    Operation("POST", "/v1/activities", start_activity,
              "Start a Live Activity for users or devices (push-to-start; Android: data message)",
              "Activities", auth=KEY, scope="pushes:write", secret_key_only=True,
              body=ActivityStart, response=ActivitySent, status_code=201, idempotent=True,
              description="iOS devices need a push-to-start token (iOS 17.2+); each gets a "
              "pending token until the app reports the activity's own. The push is tracked "
              "like any other (`push_id`). `broadcast`: Brik opens an APNs broadcast channel "
              "first (APNs unreachable: 503 `broadcast_unavailable`, nothing started).",
              errors={503: "APNs did not open the broadcast channel"}),
    Operation("POST", "/v1/activities/register", register_activity,
              "Register an activity the app started itself, with its token", "Activities",
              auth=KEY, scope="devices:write", body=ActivityRegistration, response=ActivityOut,
              status_code=201, idempotent=True,
              description="For apps: publishable keys may call it.",
              errors={404: "No such device"}),
    Operation("GET", "/v1/activities", list_activities, "List activities, with filters",
              "Activities", auth=KEY, scope="pushes:read", query=ActivityListQuery,
              response=Page[ActivityOut]),
    Operation("GET", ACTIVITY, retrieve_activity,
              "An activity: its state, each token's status, its last deliveries", "Activities",
              auth=KEY, scope="pushes:read", response=ActivityDetail),
    Operation("POST", ACTIVITY + "/tokens", report_activity_token,
              "Report (or rotate) the activity's push token on a device", "Activities",
              auth=KEY, scope="devices:write", body=ActivityTokenReport,
              response=ActivityTokenOut, idempotent=True,
              description="For apps: publishable keys may call it. A starting activity becomes "
              "active.", errors={404: "No such device", **_ENDED}),
    Operation("POST", ACTIVITY + "/update", update_activity,
              "Update an activity's content state (the newest state wins)", "Activities",
              auth=KEY, scope="pushes:write", secret_key_only=True, body=ActivityUpdate,
              response=ActivitySent, idempotent=True, errors=_ENDED,
              description="Deliveries of earlier updates still queued are superseded, never "
              "sent; every update carries a larger timestamp than the one before."),
    Operation("POST", ACTIVITY + "/end", end_activity, "End an activity", "Activities",
              auth=KEY, scope="pushes:write", secret_key_only=True, body=ActivityEnd,
              response=ActivitySent, idempotent=True, errors=_ENDED),
]  # fmt: skip
