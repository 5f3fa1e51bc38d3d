"""``/v1/pushes``: send a push to devices, and follow it until every delivery is final.

``POST /v1/pushes`` (secret key, ``pushes:write``) resolves the recipients, checks the content
against both providers' limits, and commits the push with one delivery row per device before
answering 202 — from then on it cannot be lost: jobs are enqueued after the commit (if Redis is
away then, as soon as it is back: :mod:`controlplane.enqueue_relay`), and the worker's
reconciler re-enqueues anything a lost job leaves behind. Retrying with the same
``Idempotency-Key`` replays the first answer instead of sending again. When devices ``to``
names are left out — none matches, all are invalid, or the push needs a token some have not
registered (a Live Activity's, the push-to-start or the widget push token: which one, the
providers declare) — the 202 says so in ``warnings`` rather than "completing" silently.

:func:`send_content` is that for any push content (the acceptance itself is
:mod:`controlplane.sending`'s); ``POST /v1/widgets/{kind}/reload``
(``controlplane/api/widgets.py``) sends its widget push through it too.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response
from tortoise.expressions import Q, Subquery
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from controlplane import mail
from controlplane.api.event_stream import Snapshot, open_stream
from controlplane.api.fields import Moment, ObjectId
from controlplane.api.pagination import ListQuery, Page, paginate
from controlplane.api.routing import Auth, Call, Operation
from controlplane.errors import InvalidRequest
from controlplane.fan_out import Destination
from controlplane.models import (
    TOKEN_COLUMNS,
    Delivery,
    DeliveryStatus,
    Device,
    DeviceStatus,
    DeviceTag,
    KeyMode,
    Platform,
    Push,
    PushStatus,
    TokenSlot,
)
from controlplane.payloads import ProviderCatalog, PushContent, check_sizes
from controlplane.sending import Sender, accept_push
from controlplane.usage import release_pushes


class Target(BaseModel):
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
    user_ids: list[str] = Field(default_factory=list, max_length=1000)
    tags: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _names_someone(self) -> Target:
        if not (self.device_ids or self.user_ids or self.tags):
            raise ValueError("name at least one of device_ids, user_ids or tags")
        return self


class PushRequest(PushContent):
    to: Target
    send_at: Moment | None = Field(default=None, description="Send later (cancellable until then).")


class PushAccepted(BaseModel):
    object: Literal["push"] = "push"
    id: str
    status: PushStatus
    recipients: int


WarningCode = Literal[
    "no_recipients", "no_live_activity_token", "no_push_to_start_token", "no_widget_push_token"
]


class PushWarning(BaseModel):
    code: WarningCode
    message: str = Field(description="What was left out, how many, and why.")


class PushSent(PushAccepted):
    warnings: list[PushWarning] = Field(
        default_factory=list,
        description="Why some or all of the devices `to` names get nothing (empty when all do).",
    )


class PushDetail(BaseModel):
    object: Literal["push"] = "push"
    id: str
    mode: KeyMode
    kind: str
    status: PushStatus
    recipients: int
    deliveries: dict[str, int] = Field(description="Deliveries by status.")
    content: dict[str, Any]
    to: dict[str, Any]
    send_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    canceled_at: datetime | None


class DeliveryOut(BaseModel):
    object: Literal["delivery"] = "delivery"
    id: str
    push_id: str
    device_id: str | None
    platform: str
    provider: str
    status: DeliveryStatus
    reason: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, row: Delivery) -> DeliveryOut:
        return cls(
            id=row.id, push_id=row.push_id, device_id=row.device_id,  # type: ignore[attr-defined]
            platform=row.platform,
            provider=row.provider, status=row.status, reason=row.reason, attempts=row.attempts,
            created_at=row.created_at, sent_at=row.sent_at, completed_at=row.completed_at,
        )  # fmt: skip


class PushSummary(PushAccepted):
    kind: str
    mode: KeyMode
    send_at: datetime | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, row: Push) -> PushSummary:
        return cls(
            id=row.id, status=row.status, recipients=row.recipients, kind=row.kind,
            mode=row.mode, send_at=row.send_at, created_at=row.created_at,
            completed_at=row.completed_at,
        )  # fmt: skip


class PushListQuery(ListQuery):
    status: PushStatus | None = None
    kind: Literal["alert", "background", "liveactivity", "widget"] | None = None
    created_gte: Moment | None = Field(default=None, description="Created at or after.")
    created_lt: Moment | None = Field(default=None, description="Created before.")


class WireForm(BaseModel):
    provider: str = Field(description="APNs, FCM.")
    payload: dict[str, Any] = Field(
        description="What the provider receives (the device token left out)."
    )
    size: int = Field(description="Bytes on the provider's wire.")
    limit: int
    fits: bool


class PushPreview(BaseModel):
    object: Literal["push_preview"] = "push_preview"
    providers: list[WireForm]


class DeliveryListQuery(ListQuery):
    status: DeliveryStatus | None = None


def _named(call: Call, target: Target) -> QuerySet[Device]:
    """Every device of the key's project and mode the target names, whatever its state."""
    return devices_named(call, target.device_ids, target.user_ids, target.tags)


def devices_named(
    call: Call, device_ids: Collection[str], user_ids: Collection[str], tags: Collection[str]
) -> QuerySet[Device]:
    """Every device of the key's project and mode with one of ``device_ids``, ``user_ids`` or
    ``tags`` (a batch asks for all its messages' at once), whatever its state. At least one
    must be given (an empty filter would name every device)."""
    assert device_ids or user_ids or tags, "name at least one device, user or tag"
    wanted = Q()
    if device_ids:
        wanted |= Q(id__in=list(device_ids))
    if user_ids:
        wanted |= Q(user_id__in=list(user_ids))
    if tags:
        # A subquery, not a join: a join would drop devices without tags from the other terms.
        tagged = DeviceTag.filter(tag__in=list(tags)).values("device_id")
        wanted |= Q(id__in=Subquery(tagged))
    return call.tenant.query(Device).filter(wanted)


# A token a push may need beyond the device's own: its warning code, what it is, and the
# registration field an app sends it in.
_TOKENLESS: dict[TokenSlot, tuple[WarningCode, str, str]] = {
    TokenSlot.LIVE_ACTIVITY: ("no_live_activity_token", "Live Activity token",
                              "live_activity_token"),
    TokenSlot.PUSH_TO_START: ("no_push_to_start_token", "push-to-start token (iOS 17.2+)",
                              "push_to_start_token"),
    TokenSlot.WIDGET: ("no_widget_push_token", "widget push token (iOS 26+; older iOS has "
                       "none: refresh those widgets with a background push)",
                       "widget_push_token"),
}  # fmt: skip


def special_tokens(call: Call, content: PushContent) -> dict[Platform, TokenSlot]:
    """Platform → the token ``content`` needs there other than the device's own, as the
    providers declare it (a Live Activity push on iOS: the activity's token, …)."""
    catalog: ProviderCatalog = call.request.app.state.providers
    slots = {platform: catalog.token_slot(content, platform.value) for platform in Platform}
    return {platform: slot for platform, slot in slots.items() if slot is not TokenSlot.DEVICE}


def _lacking(platform: Platform, slot: TokenSlot) -> Q:
    """Devices of ``platform`` without the ``slot`` token."""
    lookup: dict[str, Any] = {f"{TOKEN_COLUMNS[slot]}__isnull": True}
    return Q(platform=platform, **lookup)


async def _recipients(
    call: Call, target: Target, needed: dict[Platform, TokenSlot]
) -> list[Destination]:
    """Every active device the target names that has the token the push goes to, once each.

    On PostgreSQL the query is written out (:func:`_recipients_sql`): every send runs it, and
    building it through the ORM cost three times what running it does."""
    client = Device._meta.db
    project, mode = call.tenant.project, call.tenant.mode
    rows: list[tuple[Any, Any]]
    if client.capabilities.dialect == "postgres" and project is not None and mode is not None:
        _, found = await client.execute_query(_recipients_sql(tuple(needed.items())), [
            project.id, mode.value, DeviceStatus.ACTIVE.value, list(target.device_ids),
            list(target.user_ids), list(target.tags),
        ])  # fmt: skip
        rows = [(row["id"], row["platform"]) for row in found]
    else:
        query = _named(call, target).filter(status=DeviceStatus.ACTIVE)
        for platform, slot in needed.items():
            query = query.exclude(_lacking(platform, slot))
        rows = list(await query.values_list("id", "platform"))
    unique = dict.fromkeys((str(device_id), str(platform)) for device_id, platform in rows)
    return [Destination(device_id, platform) for device_id, platform in unique]


@functools.cache
def _recipients_sql(needed: tuple[tuple[Platform, TokenSlot], ...]) -> str:
    """What :func:`_recipients` asks the ORM, for PostgreSQL: the key's project and mode's
    active devices named by id, user or tag, without those of a platform lacking the token
    the push needs there (platforms and columns are the code's own names, never input)."""
    lacking = "".join(
        f""" AND NOT ("platform" = '{platform.value}' AND "{TOKEN_COLUMNS[slot]}" IS NULL)"""
        for platform, slot in needed
    )
    return (
        f'SELECT "id", "platform" FROM "{Device._meta.db_table}" WHERE "project_id" = $1 '
        f'AND "mode" = $2 AND "status" = $3 AND ("id" = ANY($4::text[]) '
        f'OR "user_id" = ANY($5::text[]) OR "id" IN (SELECT "device_id" FROM '
        f'"{DeviceTag._meta.db_table}" WHERE "tag" = ANY($6::text[]))){lacking}'
    )


def _devices(n: int) -> str:
    return f"{n} device" if n == 1 else f"{n} devices"


async def _warnings(
    call: Call, target: Target, recipients: int, needed: dict[Platform, TokenSlot]
) -> list[PushWarning]:
    """Why devices the target names get nothing — a 202 alone would not say (counted only for
    pushes that need a token of their own and for sends that reach nobody, so a plain fan-out
    pays nothing)."""
    lacking: dict[TokenSlot, int] = {}
    for platform, slot in needed.items():
        lacking[slot] = lacking.get(slot, 0) + await _named(call, target).filter(
            _lacking(platform, slot), status=DeviceStatus.ACTIVE
        ).count()  # fmt: skip
    named = invalid = 0
    if not recipients:
        named = await _named(call, target).count()
        if named:
            invalid = await _named(call, target).filter(status=DeviceStatus.INVALID).count()
    return warnings_of(call.key.mode, recipients, named, invalid, lacking)


def warnings_of(
    mode: KeyMode, recipients: int, named: int, invalid: int, lacking: dict[TokenSlot, int]
) -> list[PushWarning]:
    """The warnings of a send that reaches ``recipients`` of the ``named`` devices (counted
    only when it reaches nobody), ``invalid`` of them refused by a provider, and ``lacking``
    active ones without the token it needs, by token."""
    tokenless = sum(lacking.values())
    warnings = []
    if not recipients:
        if not named:
            why = (f"`to` matches no device registered with {mode.value} keys in this "
                   "project")  # fmt: skip
        else:
            left_out = []
            if invalid:
                left_out.append(f"{invalid} invalid (a provider refused the token)")
            if tokenless:
                left_out.append(f"{tokenless} without the token this push needs")
            why = f"`to` matches {_devices(named)}, none of which can receive it: " + (
                " and ".join(left_out)
            )
        warnings.append(PushWarning(code="no_recipients", message=f"{why}. Nothing is sent."))
    for slot, count in lacking.items():
        if not count:
            continue
        code, token, field = _TOKENLESS[slot]
        skipped = "1 iOS device was" if count == 1 else f"{count} iOS devices were"
        warnings.append(PushWarning(
            code=code,
            message=f"{skipped} skipped: no {token} registered (the app sends it as `{field}` "
            "when it has one; one Apple refused is dropped).",
        ))  # fmt: skip
    return warnings


async def _mail(call: Call, email: mail.Email) -> None:
    """Send ``email`` through the app's mail sender (the key ring is read only when one goes)."""
    await mail.send(email, call.request.app.state.mail_sender, call.keyring)


def sender_of(call: Call) -> Sender:
    """The API key's project and mode as a :class:`controlplane.sending.Sender`; work it
    leaves for after the commit runs with the call's."""
    project = call.tenant.project
    assert project is not None, "an API key's tenant has its project"
    return Sender(
        project=project, organization=call.tenant.organization, mode=call.key.mode,
        settings=call.settings, providers=call.request.app.state.providers,
        relay=call.request.app.state.enqueue_relay, send_mail=partial(_mail, call),
        after_commit=call.after_commit, credentials=call.tenant.credentials,
    )  # fmt: skip


_BRIK_LIVE_ACTIVITY_FIELDS = ("timestamp", "activity_id", "channel_id")


async def send_push(call: Call) -> PushSent:
    body = call.body_as(PushRequest)
    content = PushContent.model_validate(body.model_dump(exclude={"to", "send_at"}))
    stamp_live_activity(content)
    return await send_content(call, content, body.to, body.send_at)


def stamp_live_activity(content: PushContent) -> None:
    """A Live Activity push sent to devices: refuse the fields Brik sets for an activity
    addressed by id, and stamp its ``timestamp`` now."""
    live = content.live_activity
    if live is None:
        return
    for name in _BRIK_LIVE_ACTIVITY_FIELDS:
        if getattr(live, name) is not None:
            raise InvalidRequest(
                f"live_activity.{name}: Brik sets it (use /v1/activities to address an "
                "activity by id).", code="parameter_invalid", param=f"live_activity.{name}",
            )  # fmt: skip
    # Stamped now, once: every retry of this push carries the same aps.timestamp, so a late
    # one never counts as newer than what was sent after it.
    live.timestamp = int(datetime.now(UTC).timestamp())


async def send_content(
    call: Call, content: PushContent, to: Target, send_at: datetime | None = None
) -> PushSent:
    """Accept ``content`` for the devices ``to`` names that have the token it goes to, inside
    the call's transaction (:func:`controlplane.sending.accept_push`), and say in ``warnings``
    who was left out and why."""
    check_sizes(content, call.request.app.state.providers)
    now = datetime.now(UTC)
    needed = special_tokens(call, content)
    recipients = await _recipients(call, to, needed)
    push = await accept_push(
        sender_of(call), content, to.model_dump(), recipients, now, send_at=send_at
    )
    warnings = await _warnings(call, to, len(recipients), needed)
    return PushSent(id=push.id, status=push.status, recipients=push.recipients, warnings=warnings)


async def _counts(push: Push) -> dict[str, int]:
    rows = await (
        Delivery.filter(push_id=push.id)
        .annotate(n=Count("id"))
        .group_by("status")
        .values_list("status", "n")
    )
    return {str(status): int(n) for status, n in rows}


async def _detail(push: Push) -> PushDetail:
    return PushDetail(
        id=push.id, mode=push.mode, kind=push.kind, status=push.status,
        recipients=push.recipients, deliveries=await _counts(push), content=push.content,
        to=push.target, send_at=push.send_at, created_at=push.created_at,
        completed_at=push.completed_at, canceled_at=push.canceled_at,
    )  # fmt: skip


async def retrieve_push(call: Call) -> PushDetail:
    return await _detail(call.row(Push, "push_id"))


async def list_pushes(call: Call) -> Page[PushSummary]:
    params = call.query_as(PushListQuery)
    query = call.tenant.query(Push)
    if params.status is not None:
        query = query.filter(status=params.status)
    if params.kind is not None:
        query = query.filter(kind=params.kind)
    if params.created_gte is not None:
        query = query.filter(created_at__gte=params.created_gte)
    if params.created_lt is not None:
        query = query.filter(created_at__lt=params.created_lt)
    return await paginate(query, params, PushSummary.of)


async def preview_push(call: Call) -> PushPreview:
    """The push as APNs and FCM would receive it, with each size against the limit: nothing
    is stored or sent (the dashboard's composer shows this before sending)."""
    content = call.body_as(PushContent)
    catalog: ProviderCatalog = call.request.app.state.providers
    return PushPreview(
        providers=[
            WireForm(
                provider=form.provider,
                payload=form.body,
                size=form.size,
                limit=form.limit,
                fits=form.size <= form.limit,
            )
            for form in catalog.previews(content)
        ]
    )


async def list_deliveries(call: Call) -> Page[DeliveryOut]:
    params = call.query_as(DeliveryListQuery)
    query = Delivery.filter(push_id=call.row(Push, "push_id").id)
    if params.status is not None:
        query = query.filter(status=params.status)
    return await paginate(query, params, DeliveryOut.of)


async def cancel_push(call: Call) -> PushDetail:
    push = call.row(Push, "push_id")
    now = datetime.now(UTC)
    canceled = await Push.filter(id=push.id, status=PushStatus.SCHEDULED).update(
        status=PushStatus.CANCELED, canceled_at=now, completed_at=now
    )
    if not canceled:
        raise InvalidRequest(
            f"Only scheduled pushes can be canceled; this one is {push.status.value}.",
            code="push_not_cancelable",
        )
    unsent = await Delivery.filter(push_id=push.id, status=DeliveryStatus.QUEUED).update(
        status=DeliveryStatus.CANCELED, completed_at=now, reason="canceled before send_at"
    )
    if unsent:
        # What the send reserved and will now never send goes back to its month's quota (a
        # delivery a worker already took at send_at stays counted: it is going out).
        await release_pushes(call.tenant.organization.id, push.mode, unsent, push.created_at)
    await push.refresh_from_db()
    return await _detail(push)


async def _snapshot(push_id: str) -> Snapshot | None:
    push = await Push.get_or_none(id=push_id)
    if push is None:
        return None  # deleted meanwhile, with its project
    detail = await _detail(push)
    final = detail.status in (PushStatus.COMPLETED, PushStatus.CANCELED)
    return Snapshot(detail.model_dump_json(), final)


async def push_events(call: Call) -> Response:
    """Server-sent events: the push's status and counts on every change, until it is final
    (how a stream ends and what bounds it: :mod:`controlplane.api.event_stream`)."""
    push = call.row(Push, "push_id")
    project = call.tenant.project
    assert project is not None, "an API key's tenant has its project"
    hub = call.request.app.state.events_hub
    return open_stream(hub, call.settings, project.id, push.id, _snapshot)


KEY = Auth.API_KEY
PUSH = "/v1/pushes/{push_id}"
operations = [
    Operation("POST", "/v1/pushes", send_push, "Send a push (202 once it is committed)",
              "Pushes", auth=KEY, scope="pushes:write", body=PushRequest,
              response=PushSent, status_code=202, idempotent=True,
              description="A push larger than 4 KB as APNs or FCM would receive it is a 400 "
              "`payload_too_large`."),
    Operation("GET", "/v1/pushes", list_pushes, "List pushes, newest first", "Pushes",
              auth=KEY, scope="pushes:read", query=PushListQuery, response=Page[PushSummary]),
    Operation("POST", "/v1/pushes/preview", preview_push,
              "A push as APNs and FCM would receive it, and its size against their limits",
              "Pushes", auth=KEY, scope="pushes:read", body=PushContent, response=PushPreview,
              transactional=False,
              description="Nothing is stored or sent. A push over a provider's limit is "
              "answered with `fits: false` for it (sending it would be a 400 "
              "`payload_too_large`)."),
    Operation("GET", PUSH, retrieve_push, "A push: status and deliveries by outcome", "Pushes",
              auth=KEY, scope="pushes:read", response=PushDetail),
    Operation("GET", PUSH + "/deliveries", list_deliveries, "A push's deliveries, per device",
              "Pushes", auth=KEY, scope="pushes:read", query=DeliveryListQuery,
              response=Page[DeliveryOut]),
    Operation("GET", PUSH + "/events", push_events,
              "Server-sent events: the push's status and counts until it is final", "Pushes",
              auth=KEY, scope="pushes:read", response_media_type="text/event-stream",
              description="`event: push` with the push on every change; `event: end` once it "
              "is final (`data: {}`) or deleted (`data: {\"reason\": \"deleted\"}`). A stream "
              "closed without `end` (it lasts at most `BRIK_EVENT_STREAM_MAX_SECONDS`) is "
              "reopened by the client. Open streams are bounded per project and per API "
              "process: beyond, 429 `too_many_streams`."),
    Operation("POST", PUSH + "/cancel", cancel_push, "Cancel a scheduled push", "Pushes",
              auth=KEY, scope="pushes:write", response=PushDetail),
]  # fmt: skip
