"""Live Activities by id: start, register, report tokens, update, end — and their lifecycle.

A tenant addresses an activity (``act_…``, :mod:`controlplane.models.activities`) instead of
devices: the server starts one for users or devices (a push-to-start on iOS 17.2+, a data
message on Android), or the app registers one it started itself; from then on
``update`` and ``end`` name the activity, and Brik sends each device the push its platform
needs through that activity's own token there.

**The newest state wins.** Every update or end of an activity is accepted with its row locked,
one after the other, and

* gets a ``timestamp`` (APNs ``aps.timestamp``; on Android ``brik_live_activity_timestamp``)
  strictly larger than the one before — the current second, or one more than the last when
  several come within a second — stamped once at accept time, so every retry of it carries the
  same one, and a late retry of an older update is older than what the device shows: the
  system (and Brik's Android SDK) ignores it instead of rolling the Lock Screen back;
* *supersedes* the deliveries of the activity's earlier pushes still queued (not yet taken by
  a worker, or waiting to be retried): they end ``superseded``, are never sent, and their
  quota is given back. A delivery already on the wire goes; its older timestamp settles it.

**Lock order.** A change takes its locks in the order everything else that writes these rows
takes them, so none of them meets it in a deadlock (PostgreSQL would kill one side: a 500, or a
worker's failed job): the project's row (shared, as the new push's foreign key would; a
project deletion locks it first), then the activity, then the devices it is on (shared, as the
new deliveries' foreign keys would; deleting a device locks it before its deliveries), then the
earlier pushes, then their deliveries — a worker's claim locks a push before its deliveries
(``workers/tasks/deliver.py``).

**Lifecycle** (:func:`status_at`): ``starting`` (push-to-start sent, no activity token yet) →
``active`` → ``stale`` (past its stale date, not updated since) → ``ended`` → ``dismissed``.
Apple ends an activity 8 hours after it started and removes it from the Lock Screen at most 4
hours after it ended (at its dismissal date, if sooner); Brik applies the same limits — reads
and updates see them at once, and the worker's sweep (:func:`sweep`) writes them down each
minute so lists filter by the true status.

**Realtime.** Once an update or end has committed, :func:`announce` publishes it on the
realtime channel ``activity:{id}`` (``controlplane/realtime/``), so an app in the foreground
sees it at once, without waiting for the push. The push stays the source of truth: a Redis
failure there is logged and never fails the change.

Domain code: callers pass a :class:`controlplane.sending.Sender`, never an HTTP request, and run
these inside their transaction.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from controlplane.crypto import KeyRing
from controlplane.errors import Conflict, RateLimited
from controlplane.fan_out import Destination
from controlplane.models import (
    OPEN_ACTIVITY_STATUSES,
    Activity,
    ActivityStatus,
    ActivityToken,
    ActivityTokenStatus,
    Delivery,
    DeliveryStatus,
    Device,
    Platform,
    Push,
    PushStatus,
)
from controlplane.models.ids import new_activity_id
from controlplane.payloads import ActivityAlert, LiveActivity, PushContent, check_sizes
from controlplane.realtime import messages
from controlplane.realtime.channels import Channel, activity_channel
from controlplane.sending import Sender, accept_push
from controlplane.usage import release_pushes
from controlplane.webhook_events import emit_activity_ended, emit_push_completed

logger = logging.getLogger("brik.activities")

ACTIVE_LIMIT = timedelta(hours=8)  # Apple ends an activity this long after it started
LOCK_SCREEN_LIMIT = timedelta(hours=4)  # and removes an ended one from the Lock Screen after
ACTIVITY_ID_KEY = "brik_activity_id"  # added to a push-to-start's attributes
SWEEP_BATCH = 1000
MAX_TIMESTAMP_LEAD = 60  # seconds an activity's timestamps may run ahead of the clock

Priority = Literal[5, 10]


class ChannelUnavailable(Exception):
    """A broadcast channel could not be opened or closed; ``temporary``: try again later."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class BroadcastChannels(Protocol):
    """Opening and closing APNs broadcast channels (``workers/providers/apns_channels.py``
    answers; the app gets it from ``controlplane/app.py``). Raises :class:`ChannelUnavailable`."""

    async def open(
        self, project_id: str, keyring: KeyRing, *, test_mode: bool, keep_latest: bool
    ) -> str:
        """A new channel's id; ``keep_latest``: APNs keeps the newest message for devices
        offline (else frequent updates, nothing stored)."""
        ...

    async def close(
        self, project_id: str, channel_id: str, keyring: KeyRing, *, test_mode: bool
    ) -> None:
        """Delete the channel (one already gone is fine)."""
        ...


@dataclass(frozen=True)
class Change:
    """What an update or an end says (``None``: leave it as it is)."""

    content_state: dict[str, Any] | None = None
    alert: ActivityAlert | None = None
    stale_date: datetime | None = None
    dismissal_date: datetime | None = None
    relevance_score: float | None = None
    priority: Priority = 5
    ttl: int | None = None


@dataclass
class Sent:
    """An activity after a change, the push that carries it (None when nothing is sent) and
    the devices left out, by why."""

    activity: Activity
    push: Push | None
    skipped: Counter[str] = field(default_factory=Counter)


def status_at(activity: Activity, now: datetime) -> ActivityStatus:
    """The activity's status at ``now``, Apple's time limits applied (see the docstring)."""
    status = activity.status
    if status in OPEN_ACTIVITY_STATUSES:
        apple_ends = activity.created_at + ACTIVE_LIMIT
        if now >= apple_ends:
            return ActivityStatus.DISMISSED if now >= apple_ends + LOCK_SCREEN_LIMIT else (
                ActivityStatus.ENDED
            )  # fmt: skip
        if activity.stale_date is not None and activity.stale_date <= now:
            return ActivityStatus.STALE
        return status
    if status is ActivityStatus.ENDED and now >= dismissed_at(activity):
        return ActivityStatus.DISMISSED
    return status


def dismissed_at(activity: Activity) -> datetime:
    """When an ended activity leaves the Lock Screen: its dismissal date, at most 4 h on."""
    ended = activity.ended_at or activity.created_at + ACTIVE_LIMIT
    latest = ended + LOCK_SCREEN_LIMIT
    return latest if activity.dismissal_date is None else min(activity.dismissal_date, latest)


def next_timestamp(activity: Activity, now: datetime) -> int:
    """Strictly larger than the last one the activity carried (unix seconds) — and never more
    than :data:`MAX_TIMESTAMP_LEAD` ahead of the clock: past that, 429 ``activity_update_rate``.

    More than one change a second moves the timestamps ahead of real time, and far enough ahead
    the device would ignore the app's own local updates (and Apple drops timestamps hours in
    the future). One change a second on average, in bursts of up to a minute's worth, is far
    beyond what Apple's update budget lets through anyway.
    """
    clock = int(now.timestamp())
    timestamp = max(clock, int(activity.last_timestamp) + 1)
    if timestamp > clock + MAX_TIMESTAMP_LEAD:
        wait = timestamp - clock - MAX_TIMESTAMP_LEAD
        raise RateLimited(
            f"Activity {activity.id} changes faster than once a second: its timestamps would "
            f"run more than {MAX_TIMESTAMP_LEAD} seconds ahead of the clock. Send the newest "
            f"state in {wait} s (it replaces every update still queued).",
            code="activity_update_rate", headers={"Retry-After": str(wait)},
        )  # fmt: skip
    return timestamp


def _priority(priority: Priority) -> Literal["high", "normal"]:
    return "high" if priority == 10 else "normal"


async def start(
    sender: Sender,
    *,
    activity_type: str,
    attributes: dict[str, Any],
    content_state: dict[str, Any],
    devices: list[Device],
    change: Change,
    user_id: str | None,
    channel_id: str | None,
    now: datetime,
) -> Sent:
    """Start an activity on ``devices`` (active ones of the sender's project and mode).

    iOS devices get a push-to-start (those without a push-to-start token are skipped), Android
    devices a data message; each gets its token row (pending on iOS until the app reports the
    activity's own token).
    """
    ios = [d for d in devices if d.platform is Platform.IOS]
    startable = [d for d in ios if d.push_to_start_token_encrypted is not None]
    android = [d for d in devices if d.platform is Platform.ANDROID]
    # Waiting for tokens: only iOS devices reached through tokens of their own (a broadcast
    # activity's updates go to its channel, which they subscribe to when it starts).
    waits = channel_id is None and (startable or not android)
    activity = await Activity.create(
        project=sender.project, mode=sender.mode, activity_type=activity_type,
        attributes=attributes, content_state=content_state,
        status=ActivityStatus.STARTING if waits else ActivityStatus.ACTIVE,
        started_by="server", user_id=user_id, channel_id=channel_id,
        stale_date=change.stale_date, relevance_score=change.relevance_score,
        last_timestamp=int(now.timestamp()),
    )  # fmt: skip
    reached = [*startable, *android]
    with_tokens = android if channel_id is not None else reached
    await ActivityToken.bulk_create([
        ActivityToken(
            activity=activity, device_id=device.id, platform=device.platform.value,
            status=ActivityTokenStatus.PENDING if device.platform is Platform.IOS
            else ActivityTokenStatus.ACTIVE,
        )
        for device in with_tokens
    ])  # fmt: skip
    token_ids = dict(
        await ActivityToken.filter(activity_id=activity.id).values_list("device_id", "id")
    )
    content = PushContent(
        kind="liveactivity",
        live_activity=LiveActivity(
            event="start", content_state=content_state, attributes_type=activity_type,
            attributes={**attributes, ACTIVITY_ID_KEY: activity.id}, alert=change.alert,
            stale_date=change.stale_date, relevance_score=change.relevance_score,
            timestamp=activity.last_timestamp, activity_id=activity.id, channel_id=channel_id,
        ),
        priority=_priority(change.priority), ttl=change.ttl,
    )  # fmt: skip
    check_sizes(content, sender.providers)
    destinations = [
        Destination(d.id, d.platform.value, activity_token_id=token_ids.get(d.id)) for d in reached
    ]
    target = {"activity_id": activity.id, "event": "start"}
    push = await accept_push(sender, content, target, destinations, now, activity_id=activity.id)
    skipped: Counter[str] = Counter()
    if len(startable) < len(ios):
        skipped["no_push_to_start_token"] = len(ios) - len(startable)
    return Sent(activity, push, skipped)


async def register(
    sender: Sender,
    keyring: KeyRing,
    *,
    device: Device,
    token: str | None,
    activity_type: str,
    attributes: dict[str, Any],
    content_state: dict[str, Any],
    stale_date: datetime | None,
    relevance_score: float | None,
    now: datetime,
) -> Activity:
    """An activity the app started itself, with its token on ``device`` (iOS; Android: none).

    400 ``payload_too_large`` when its start would not fit in a push, as for one the server
    starts: its state goes out again with every update and end, and apps hold a public key.
    """
    activity_id = new_activity_id()
    start = LiveActivity(
        event="start", content_state=content_state, attributes_type=activity_type,
        attributes={**attributes, ACTIVITY_ID_KEY: activity_id}, stale_date=stale_date,
        relevance_score=relevance_score, timestamp=int(now.timestamp()), activity_id=activity_id,
    )  # fmt: skip
    check_sizes(PushContent(kind="liveactivity", live_activity=start), sender.providers)
    activity = await Activity.create(
        id=activity_id, project=sender.project, mode=sender.mode, activity_type=activity_type,
        attributes=attributes, content_state=content_state, status=ActivityStatus.ACTIVE,
        started_by="app", user_id=device.user_id, stale_date=stale_date,
        relevance_score=relevance_score, last_timestamp=int(now.timestamp()),
    )  # fmt: skip
    await _store_token(activity, device, token, keyring)
    return activity


async def _store_token(
    activity: Activity, device: Device, token: str | None, keyring: KeyRing
) -> ActivityToken:
    """Insert or replace the activity's token on ``device`` (now active)."""
    fields: dict[str, Any] = {
        "platform": device.platform.value,
        "token_encrypted": None if token is None else keyring.encrypt(token.lower().encode()),
        "token_last_four": None if token is None else token[-4:].lower(),
        "status": ActivityTokenStatus.ACTIVE,
        "invalid_reason": None,
    }
    await ActivityToken.bulk_create(
        [ActivityToken(activity=activity, device_id=device.id, **fields)], ignore_conflicts=True
    )
    row = await ActivityToken.get(activity_id=activity.id, device_id=device.id)
    for name, value in fields.items():
        setattr(row, name, value)
    await row.save(update_fields=[*fields, "updated_at"])
    return row


def _still_open(activity: Activity, now: datetime, doing: str) -> ActivityStatus:
    status = status_at(activity, now)
    if status not in OPEN_ACTIVITY_STATUSES:
        raise Conflict(
            f"Activity {activity.id} is {status.value}: it cannot {doing} any more (Apple ends "
            "an activity 8 hours after it started). Start a new one.",
            code="activity_ended",
        )
    return status


async def report_token(
    activity: Activity, device: Device, token: str | None, keyring: KeyRing, now: datetime
) -> ActivityToken:
    """The app reports (or rotates) the activity's token on ``device``; a starting activity
    becomes active."""
    _still_open(activity, now, "take tokens")
    row = await _store_token(activity, device, token, keyring)
    if activity.status is ActivityStatus.STARTING:
        activity.status = ActivityStatus.ACTIVE
        await activity.save(update_fields=["status", "updated_at"])
    return row


# Shared locks (FOR KEY SHARE: what a foreign key check takes) on the rows a change will point
# its new rows at, taken before it locks anything else (the lock order: the module docstring).
_HOLD_PROJECT = 'SELECT 1 FROM "projects" WHERE "id" = $1 FOR KEY SHARE'
_HOLD_DEVICES = (
    'SELECT 1 FROM "devices" WHERE "id" IN '
    '(SELECT "device_id" FROM "activity_tokens" WHERE "activity_id" = $1) FOR KEY SHARE'
)


async def _hold(statement: str, value: str) -> None:
    client = Activity._meta.db  # the caller's transaction
    if client.capabilities.dialect == "postgres":  # SQLite: one writer at a time anyway
        await client.execute_query(statement, [value])


async def lock(sender: Sender, activity_id: str) -> Activity:
    """The activity, locked until the transaction ends: its changes go one after the other
    (and take their locks in one order: the module docstring)."""
    await _hold(_HOLD_PROJECT, sender.project.id)
    query = Activity.filter(project_id=sender.project.id, mode=sender.mode, id=activity_id)
    activity = await query.select_for_update().get()
    await _hold(_HOLD_DEVICES, activity.id)
    return activity


async def _supersede_queued(sender: Sender, activity: Activity, now: datetime) -> int:
    """End the still-queued deliveries of the activity's earlier updates ``superseded`` and
    give back their quota; returns how many. Never the start's: a push-to-start not yet sent
    must still go, or the activity never appears."""
    # Model rows, not values_list(): Tortoise drops FOR UPDATE from a values query.
    open_pushes = await (
        Push.filter(activity_id=activity.id, status__in=[PushStatus.QUEUED, PushStatus.SENDING])
        .order_by("id").select_for_update(no_key=True).only("id", "created_at", "target")
    )  # fmt: skip
    superseded = 0
    for push in open_pushes:
        push_id, created_at = push.id, push.created_at
        if push.target.get("event") == "start":
            continue
        count = await Delivery.filter(push_id=push_id, status=DeliveryStatus.QUEUED).update(
            status=DeliveryStatus.SUPERSEDED, completed_at=now, lease_token=None,
            lease_until=None, reason="a newer update of the activity was accepted before it went",
        )  # fmt: skip
        if not count:
            continue
        superseded += count
        await release_pushes(sender.organization.id, sender.mode, count, created_at)
        still_open = Delivery.filter(
            push_id=push_id, status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENDING]
        )
        if not await still_open.exists():
            await Push.filter(id=push_id).update(status=PushStatus.COMPLETED, completed_at=now)
            await emit_push_completed(await Push.get(id=push_id), now)
    return superseded


async def _destinations(activity: Activity) -> tuple[list[Destination], Counter[str]]:
    """Where a change of ``activity`` goes: its channel (a broadcast) or its active tokens."""
    rows = await ActivityToken.filter(activity_id=activity.id).values_list(
        "id", "device_id", "platform", "status", "device__status"
    )
    skipped: Counter[str] = Counter()
    destinations = []
    if activity.channel_id is not None:
        destinations.append(Destination(None, Platform.IOS.value, channel_id=activity.channel_id))
    for token_id, device_id, platform, status, device_status in rows:
        if platform == Platform.IOS.value and activity.channel_id is not None:
            continue  # the channel reaches them
        if status != ActivityTokenStatus.ACTIVE or device_status != "active":
            skipped[f"token_{status}" if device_status == "active" else "device_invalid"] += 1
            continue
        destinations.append(Destination(device_id, platform, activity_token_id=token_id))
    return destinations, skipped


async def change(
    sender: Sender,
    activity: Activity,
    event: Literal["update", "end"],
    what: Change,
    now: datetime,
) -> Sent:
    """Update or end ``activity`` (locked with :func:`lock`) and send the change."""
    status = _still_open(activity, now, "be updated" if event == "update" else "be ended")
    timestamp = next_timestamp(activity, now)
    await _supersede_queued(sender, activity, now)
    if what.content_state is not None:
        activity.content_state = what.content_state
        activity.version += 1
    activity.last_timestamp = timestamp
    if what.stale_date is not None:
        activity.stale_date = what.stale_date
    if what.relevance_score is not None:
        activity.relevance_score = what.relevance_score
    if event == "end":
        activity.status = ActivityStatus.ENDED
        activity.ended_at = now
        activity.end_reason = "ended"
        activity.dismissal_date = what.dismissal_date
        if what.dismissal_date is not None and what.dismissal_date <= now:
            activity.status = ActivityStatus.DISMISSED
    elif status is ActivityStatus.STALE:
        # Updated again: active until its new stale date passes (none given: the passed one
        # is dropped — this update is the fresh content).
        if what.stale_date is None:
            activity.stale_date = None
        fresh = activity.stale_date is None or activity.stale_date > now
        activity.status = ActivityStatus.ACTIVE if fresh else ActivityStatus.STALE
    await activity.save()
    if event == "end":
        await emit_activity_ended(activity)  # told with the change, in its transaction
    destinations, skipped = await _destinations(activity)
    content = PushContent(
        kind="liveactivity",
        live_activity=LiveActivity(
            event=event, content_state=activity.content_state, alert=what.alert,
            stale_date=what.stale_date, dismissal_date=what.dismissal_date,
            relevance_score=what.relevance_score, timestamp=timestamp, activity_id=activity.id,
        ),
        priority=_priority(what.priority), ttl=what.ttl,
    )  # fmt: skip
    check_sizes(content, sender.providers)
    target = {"activity_id": activity.id, "event": event}
    # An end goes even past the month's quota (counted): refused, the activity would stay on
    # Lock Screens until Apple's 8 hours run out.
    push = await accept_push(
        sender, content, target, destinations, now, activity_id=activity.id, param=None,
        within_quota=event != "end",
    )  # fmt: skip
    return Sent(activity, push, skipped)


async def announce(
    redis: Redis, history: messages.History, activity: Activity, event: Literal["update", "end"]
) -> None:
    """Publish a committed update or end on ``activity:{id}`` (event ``activity.updated`` or
    ``activity.ended``). Never raises for Redis: the push carries the change regardless."""
    data = {
        "object": "activity", "id": activity.id, "event": event,
        "status": activity.status.value, "content_state": activity.content_state,
        "timestamp": activity.last_timestamp,
        "stale_date": _iso(activity.stale_date), "dismissal_date": _iso(activity.dismissal_date),
        "updated_at": _iso(activity.updated_at),
    }  # fmt: skip
    channel = Channel(activity.project_id, activity.mode, activity_channel(activity.id))  # type: ignore[attr-defined]
    name = "activity.updated" if event == "update" else "activity.ended"
    try:
        await messages.publish(
            redis, channel, name, json.dumps(data, separators=(",", ":")), history
        )
    except (RedisError, OSError) as exc:
        logger.warning(
            "activity %s: its %s was not published on its realtime channel (Redis: %s: %s); "
            "the push carries it", activity.id, event, type(exc).__name__, exc,
        )  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


async def sweep(now: datetime) -> Counter[str]:
    """Write down what Apple's limits and the stale dates did since the last sweep (once a
    minute from the worker); returns how many activities moved, by new status."""
    moved: Counter[str] = Counter()
    past_limit = Q(status__in=OPEN_ACTIVITY_STATUSES, created_at__lte=now - ACTIVE_LIMIT)
    while rows := await Activity.filter(past_limit).limit(SWEEP_BATCH):
        for row in rows:
            row.ended_at = row.created_at + ACTIVE_LIMIT
            row.end_reason = "apple_limit"
            row.status = ActivityStatus.ENDED
            row.status = status_at(row, now)
            async with in_transaction():
                if await Activity.filter(id=row.id, status__in=OPEN_ACTIVITY_STATUSES).update(
                    status=row.status, ended_at=row.ended_at, end_reason=row.end_reason
                ):
                    await emit_activity_ended(row)
            moved[row.status.value] += 1
    not_yet_stale = (ActivityStatus.STARTING, ActivityStatus.ACTIVE)  # as status_at says
    stale = await Activity.filter(status__in=not_yet_stale, stale_date__lte=now).update(
        status=ActivityStatus.STALE
    )
    moved[ActivityStatus.STALE.value] += stale
    gone = Q(dismissal_date__lte=now) | Q(ended_at__lte=now - LOCK_SCREEN_LIMIT)
    dismissed = await Activity.filter(gone, status=ActivityStatus.ENDED).update(
        status=ActivityStatus.DISMISSED
    )
    moved[ActivityStatus.DISMISSED.value] += dismissed
    return +moved


@dataclass(frozen=True, slots=True)
class OpenChannel:
    activity_id: str
    project_id: str
    test_mode: bool
    channel_id: str


async def channels_to_close() -> list[OpenChannel]:
    """Broadcast channels whose activity is dismissed and whose last update has gone (deleting
    a channel is final: its end must reach the devices first)."""
    rows = await Activity.filter(
        status=ActivityStatus.DISMISSED, channel_id__isnull=False, channel_closed_at__isnull=True
    ).limit(SWEEP_BATCH).values_list("id", "project_id", "mode", "channel_id")  # fmt: skip
    closable = []
    for activity_id, project_id, mode, channel_id in rows:
        if await Delivery.filter(
            push__activity_id=activity_id,
            status__in=[DeliveryStatus.QUEUED, DeliveryStatus.SENDING],
        ).exists():
            continue
        closable.append(OpenChannel(activity_id, project_id, mode == "test", channel_id))
    return closable


async def channel_closed(activity_id: str, now: datetime) -> None:
    """Note that the activity's channel is deleted at Apple."""
    await Activity.filter(id=activity_id).update(channel_closed_at=now)


async def close_project_channels(
    project_id: str, channels: BroadcastChannels, keyring: KeyRing, now: datetime
) -> int:
    """Delete at Apple every broadcast channel the project's activities still hold; returns
    how many. For its deletion, after its keys are revoked and before its APNs credential goes:
    nothing could delete them later, and they would count against the app's 10,000 for good.
    One APNs will not delete now is logged and left."""
    rows = await Activity.filter(
        project_id=project_id, channel_id__isnull=False, channel_closed_at__isnull=True
    ).values_list("id", "mode", "channel_id")
    closed = 0
    for activity_id, mode, channel_id in rows:
        try:
            await channels.close(project_id, channel_id, keyring, test_mode=mode == "test")
        except ChannelUnavailable as exc:
            logger.warning("broadcast channel of %s left at Apple: %s", activity_id, exc)
            continue
        await channel_closed(activity_id, now)
        closed += 1
    return closed
