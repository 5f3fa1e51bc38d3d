"""The webhook events Brik emits, and the one way they are emitted: the outbox.

Code that changes something a tenant may want to hear of — a push completed, a delivery failed,
a device's token died, an activity ended, a quota threshold crossed, a provider refused the
credential, the plan or subscription changed — loads the project's :class:`Outbox` and calls
:meth:`Outbox.emit` *inside the transaction of that change*. The event and one delivery row per
endpoint that wants it (``controlplane/models/webhooks.py``) commit with the change or not at
all: an event is never lost, and never tells of a change that was rolled back. Workers send the
rows (``workers/tasks/webhooks.py``); nothing here talks to the network or the queue.

An outbox with no endpoint wanting an event type writes nothing (``Outbox.wants``), so a
project without webhooks pays one indexed read per change, not a row per event.

Event types are ``<object>.<what happened>``; an endpoint lists the types it wants, whole
families (``billing.*``) or everything (``*``). :data:`EVENT_TYPES` is the catalogue
docs/webhooks.md documents (a test compares them); the ``data.object`` of each is built here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from controlplane.errors import InvalidRequest
from controlplane.models import (
    PENDING_WEBHOOK_STATUSES,
    Activity,
    Delivery,
    KeyMode,
    Push,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)

EVENT_TYPES: dict[str, str] = {
    "push.completed": "every delivery of a push is final (data: the push and its deliveries "
    "by status)",
    "delivery.failed": "a delivery ended failed: the provider refused it for good, or its "
    "retries ran out",
    "device.invalidated": "a provider said a device's token is dead; the device is marked invalid",
    "activity.ended": "a Live Activity ended: by your server, or by Apple's 8-hour limit",
    "usage.threshold": "the organization used 80 % or 100 % of a monthly quota",
    "credential.failing": "APNs or FCM refused the project's credential (at most once a day "
    "per credential version)",
    "billing.plan_changed": "the organization's plan changed (billing, an administrator, or a "
    "lapsed payment)",
    "billing.subscription_changed": "the Stripe subscription changed status, plan or cancellation",
}
# Sent to one endpoint on request (POST /v1/webhook_endpoints/{id}/test), whatever it wants.
TEST_EVENT = "webhook.test"
FAMILIES = frozenset(name.partition(".")[0] for name in EVENT_TYPES)
MAX_FILTERS = 50


def check_filters(filters: Sequence[str]) -> list[str]:
    """The event types an endpoint asks for, deduplicated; 400 naming the first unknown one."""
    known = set(EVENT_TYPES) | {f"{family}.*" for family in FAMILIES} | {"*"}
    for name in filters:
        if name not in known:
            raise InvalidRequest(
                f"events: {name!r} is not an event type; use one of "
                f"{', '.join(sorted(EVENT_TYPES))}, a family such as 'billing.*', or '*'.",
                code="parameter_invalid",
                param="events",
            )
    return sorted(set(filters))


def wants(filters: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint asking for ``filters`` gets events of ``event_type``."""
    family = event_type.partition(".")[0]
    return any(f in ("*", event_type, f"{family}.*") for f in filters)


def envelope(event: WebhookEvent) -> dict[str, Any]:
    """The event as an endpoint receives it (the JSON body, before any Slack/Discord
    rendering): Stripe's shape, ``data.object`` being what it is about."""
    created: datetime = event.created_at
    return {
        "id": event.public_id,
        "object": "event",
        "type": event.type,
        "created": int(created.timestamp()),
        "livemode": event.mode is KeyMode.LIVE,
        "project_id": event.project_id,  # type: ignore[attr-defined]
        "data": {"object": event.data},
    }


@dataclass(frozen=True, slots=True)
class Listener:
    endpoint_id: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class Outbox:
    """Where the events of one project in one mode go: its enabled endpoints and what each
    wants, read once. Emit inside the transaction of the change the event tells of."""

    project_id: str
    mode: KeyMode
    listeners: tuple[Listener, ...]

    def wants(self, event_type: str) -> bool:
        return any(wants(listener.events, event_type) for listener in self.listeners)

    def _targets(self, event_type: str) -> list[str]:
        return [each.endpoint_id for each in self.listeners if wants(each.events, event_type)]

    async def emit(
        self, event_type: str, data: dict[str, Any], *, ordering_key: str | None = None
    ) -> int:
        """Write one event and its deliveries; returns how many deliveries (0: nobody wants
        it, nothing is written)."""
        return await self.emit_many(event_type, [(data, ordering_key)])

    async def emit_many(
        self, event_type: str, items: Sequence[tuple[dict[str, Any], str | None]]
    ) -> int:
        """Write an event per ``(data, ordering_key)`` of ``items``, in that order."""
        targets = self._targets(event_type)
        if not targets or not items:
            return 0
        return await _write(self, event_type, targets, items, dedupe_key=None)

    async def emit_once(
        self, event_type: str, data: dict[str, Any], *, dedupe_key: str,
        ordering_key: str | None = None,
    ) -> int:  # fmt: skip
        """Like :meth:`emit`, unless an event was already written under ``dedupe_key`` (by
        anyone, ever): then nothing. Inside a transaction, a lost race only rolls back to a
        savepoint."""
        targets = self._targets(event_type)
        if not targets or await WebhookEvent.filter(dedupe_key=dedupe_key).exists():
            return 0
        try:
            async with in_transaction():
                return await _write(
                    self, event_type, targets, [(data, ordering_key)], dedupe_key=dedupe_key
                )
        except IntegrityError:
            return 0  # another process wrote it first


async def _write(
    outbox: Outbox, event_type: str, targets: list[str],
    items: Sequence[tuple[dict[str, Any], str | None]], dedupe_key: str | None,
) -> int:  # fmt: skip
    """The events and their deliveries. A delivery waits while its endpoint has an earlier one
    about the same object (``ordering_key``) not yet settled: it is queued when that one is."""
    keys = {key for _, key in items if key is not None}
    busy: set[tuple[str, str]] = set()
    if keys:
        pending = await WebhookDelivery.filter(
            endpoint_id__in=targets, ordering_key__in=keys, status__in=PENDING_WEBHOOK_STATUSES
        ).values_list("endpoint_id", "ordering_key")
        busy = {(str(endpoint), str(key)) for endpoint, key in pending}
    rows = []
    for data, key in items:
        event = await WebhookEvent.create(
            project_id=outbox.project_id, mode=outbox.mode, type=event_type, data=data,
            ordering_key=key, dedupe_key=dedupe_key,
        )  # fmt: skip
        for endpoint_id in targets:
            behind = key is not None and (endpoint_id, key) in busy
            if key is not None:
                busy.add((endpoint_id, key))
            status = WebhookDeliveryStatus.WAITING if behind else WebhookDeliveryStatus.QUEUED
            rows.append(WebhookDelivery(
                project_id=outbox.project_id, mode=outbox.mode, endpoint_id=endpoint_id,
                event_id=event.id, ordering_key=key, status=status,
            ))  # fmt: skip
    await WebhookDelivery.bulk_create(rows)
    return len(rows)


async def outbox(project_id: str, mode: KeyMode) -> Outbox:
    """The project's outbox in ``mode``: its enabled endpoints, read now."""
    rows = await WebhookEndpoint.filter(project_id=project_id, mode=mode, enabled=True).values_list(
        "id", "events"
    )
    return Outbox(project_id, mode, tuple(Listener(str(i), tuple(e)) for i, e in rows))


async def outboxes(
    pairs: Collection[tuple[str, KeyMode]],
) -> dict[tuple[str, KeyMode], Outbox]:
    """:func:`outbox` for each ``(project id, mode)`` of ``pairs``, read in one query."""
    found: dict[tuple[str, KeyMode], list[Listener]] = {pair: [] for pair in pairs}
    if found:
        rows = await WebhookEndpoint.filter(
            project_id__in={project for project, _ in found}, enabled=True
        ).values_list("project_id", "mode", "id", "events")
        for project_id, mode, endpoint_id, events in rows:
            listeners = found.get((str(project_id), KeyMode(mode)))
            if listeners is not None:
                listeners.append(Listener(str(endpoint_id), tuple(events)))
    return {pair: Outbox(pair[0], pair[1], tuple(each)) for pair, each in found.items()}


async def organization_outboxes(organization_id: str, mode: KeyMode) -> list[Outbox]:
    """One outbox per project of the organization with an enabled endpoint in ``mode``: for
    events about the organization itself (its quota, its plan), told to each of its projects."""
    rows = await WebhookEndpoint.filter(
        project__organization_id=organization_id, mode=mode, enabled=True
    ).values_list("project_id", "id", "events")
    by_project: dict[str, list[Listener]] = {}
    for project_id, endpoint_id, events in rows:
        by_project.setdefault(str(project_id), []).append(Listener(str(endpoint_id), tuple(events)))
    return [Outbox(project, mode, tuple(found)) for project, found in by_project.items()]


async def emit_to_organization(
    organization_id: str, mode: KeyMode, event_type: str, data: dict[str, Any],
    *, ordering_key: str | None = None,
) -> int:  # fmt: skip
    """Tell every project of the organization (each endpoint that wants it) of ``event_type``."""
    written = 0
    for box in await organization_outboxes(organization_id, mode):
        written += await box.emit(event_type, data, ordering_key=ordering_key)
    return written


# --- what each event's data.object holds ------------------------------------------------------


def _moment(value: datetime | date | None) -> str | None:
    return None if value is None else value.isoformat()


async def push_data(push: Push, completed_at: datetime | None = None) -> dict[str, Any]:
    """``push.completed``: the push, with its deliveries counted by status."""
    counts = await deliveries_by_status([push.id])
    return push_completed_data(push, counts.get(push.id, Counter()), completed_at)


async def deliveries_by_status(push_ids: Sequence[str]) -> dict[str, Counter[str]]:
    """Each push's deliveries counted by status, for many pushes in one query."""
    counted = await (
        Delivery.filter(push_id__in=list(push_ids)).annotate(count=Count("id"))
        .group_by("push_id", "status").values_list("push_id", "status", "count")
    )  # fmt: skip
    counts: dict[str, Counter[str]] = {}
    for push_id, status, count in counted:
        counts.setdefault(str(push_id), Counter())[str(status)] += int(count)
    return counts


def push_completed_data(
    push: Push, deliveries: Counter[str], completed_at: datetime | None = None
) -> dict[str, Any]:
    """``push.completed``'s data: the push, with ``deliveries`` (its own, by status)."""
    return {
        "object": "push", "id": push.id, "kind": push.kind, "status": "completed",
        "recipients": push.recipients, "deliveries": dict(sorted(deliveries.items())),
        "activity_id": push.activity_id,  # type: ignore[attr-defined]
        "created_at": _moment(push.created_at),
        "completed_at": _moment(completed_at or push.completed_at),
    }  # fmt: skip


async def emit_push_completed(push: Push, completed_at: datetime) -> int:
    """``push.completed`` for ``push``, which the caller's transaction has just completed."""
    box = await outbox(push.project_id, push.mode)  # type: ignore[attr-defined]
    if not box.wants("push.completed"):
        return 0
    return await box.emit(
        "push.completed", await push_data(push, completed_at), ordering_key=push.id
    )


def delivery_failed_data(
    delivery_id: str, push_id: str, device_id: str | None, platform: str, provider: str,
    reason: str | None, attempts: int, completed_at: datetime,
) -> dict[str, Any]:  # fmt: skip
    """``delivery.failed``: the delivery (ordered with its push's other events)."""
    return {
        "object": "delivery", "id": delivery_id, "push_id": push_id, "device_id": device_id,
        "platform": platform, "provider": provider, "status": "failed", "reason": reason,
        "attempts": attempts, "completed_at": _moment(completed_at),
    }  # fmt: skip


def device_invalidated_data(
    device_id: str, platform: str, user_id: str | None, token_last_four: str, reason: str,
    invalidated_at: datetime,
) -> dict[str, Any]:  # fmt: skip
    """``device.invalidated``: the device whose token the provider said is dead."""
    return {
        "object": "device", "id": device_id, "platform": platform, "user_id": user_id,
        "token_last_four": token_last_four, "status": "invalid", "invalid_reason": reason,
        "invalidated_at": _moment(invalidated_at),
    }  # fmt: skip


def activity_ended_data(activity: Activity) -> dict[str, Any]:
    """``activity.ended``: the activity, its last state and why it ended."""
    return {
        "object": "activity", "id": activity.id, "activity_type": activity.activity_type,
        "status": activity.status.value, "end_reason": activity.end_reason,
        "user_id": activity.user_id, "content_state": activity.content_state,
        "ended_at": _moment(activity.ended_at),
    }  # fmt: skip


async def emit_activity_ended(activity: Activity) -> int:
    """``activity.ended`` for ``activity``, which the caller's transaction has just ended."""
    box = await outbox(activity.project_id, activity.mode)  # type: ignore[attr-defined]
    return await box.emit("activity.ended", activity_ended_data(activity), ordering_key=activity.id)


def usage_threshold_data(
    organization_id: str, metric: str, percent: int, used: int, quota: int, mode: KeyMode,
    period_start: date, resets_at: datetime,
) -> dict[str, Any]:  # fmt: skip
    """``usage.threshold``: which quota, how much of it is used, and when it resets."""
    return {
        "object": "usage_threshold", "organization_id": organization_id, "metric": metric,
        "percent": percent, "used": used, "quota": quota, "mode": mode.value,
        "period_start": _moment(period_start), "resets_at": _moment(resets_at),
    }  # fmt: skip


def credential_failing_data(
    provider: str, credential_id: str | None, version: int | None, reason: str
) -> dict[str, Any]:
    """``credential.failing``: which credential the provider refused, and its words."""
    return {
        "object": "credential", "provider": provider, "id": credential_id,
        "version": version, "reason": reason,
    }  # fmt: skip


def plan_changed_data(
    organization_id: str, plan: str, previous_plan: str, source: str
) -> dict[str, Any]:
    """``billing.plan_changed``: the organization's plan, before and after."""
    return {
        "object": "organization", "id": organization_id, "plan": plan,
        "previous_plan": previous_plan, "source": source,
    }  # fmt: skip


def subscription_changed_data(
    subscription_id: str, organization_id: str, status: str, previous_status: str | None,
    plan: str | None, cancel_at_period_end: bool, current_period_end: datetime | None,
) -> dict[str, Any]:  # fmt: skip
    """``billing.subscription_changed``: the subscription as Stripe has it now."""
    return {
        "object": "subscription", "id": subscription_id, "organization_id": organization_id,
        "status": status, "previous_status": previous_status, "plan": plan,
        "cancel_at_period_end": cancel_at_period_end,
        "current_period_end": _moment(current_period_end),
    }  # fmt: skip


def endpoint_test_data(endpoint_id: str, now: datetime | None = None) -> dict[str, Any]:
    """``webhook.test``: says so, and names the endpoint."""
    return {
        "object": "webhook_endpoint", "id": endpoint_id,
        "message": "A test event from Brik Cloud: your endpoint is reachable.",
        "sent_at": _moment(now or datetime.now(UTC)),
    }  # fmt: skip
