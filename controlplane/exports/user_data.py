"""One end user's data, within one project and mode: exported, or erased.

An end user is whoever a tenant names by ``user_id`` (on devices, activities and events; in a
push's ``to.user_ids``). What is *theirs*:

- their **devices** (``user_id``), with every push token decrypted — it is their data;
- the **activities** started for them (``user_id``) or carried by one of their devices, and the
  activity tokens on their devices;
- **state** under ``user:{user_id}`` — the entry of that key and every key below
  ``user:{user_id}:`` (the convention docs/state.md and docs/export.md give for per-user
  state; a user id with characters a key may not hold has none);
- **analytics events** naming them (``user_id``) or one of their devices (``device_id``);
- **deliveries** to their devices.

Erasing removes all of that — devices (their tags and activity tokens go with them), state
entries (their bytes back to the plan, as any state deletion), analytics events — and leaves
what the tenant's counts need without the person: deliveries stay with their status, times and
provider answer, but no longer name a device or activity token; activities started for them
lose the user id, attributes and content state; pushes, activity starts and webhook events that
named the user id no longer do (``to.user_ids`` without it), and the replayable answers of
idempotent requests lose it the same way.

Deliveries are changed the way a project deletion changes them (``controlplane/project_deletion
.py``): never a delivery row a worker is sending — its send is waited for (its lease), then
rows are changed :data:`~controlplane.project_deletion.PURGE_BATCH` at a time, each batch its
own short statement retried if PostgreSQL picks it as a deadlock's victim. A delivery queued
to a device that is then deleted fails when its turn comes ("the device was deleted"), as it
would after ``DELETE /v1/devices/{id}``.

Erasing is idempotent: a second erase finds nothing and answers zero counts.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from tortoise.expressions import Q, RawSQL, Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from controlplane import state
from controlplane.crypto import KeyRing
from controlplane.exports import records
from controlplane.exports.records import Record, batched_rows
from controlplane.models import (
    Activity,
    ActivityToken,
    AnalyticsEvent,
    Delivery,
    Device,
    IdempotencyKey,
    KeyMode,
    Push,
    StateEntry,
    WebhookEvent,
)
from controlplane.project_deletion import (
    delete_in_batches,
    update_in_batches,
    wait_until_sent,
)

logger = logging.getLogger("brik.user_data")
ModelT = TypeVar("ModelT", bound=Model)
USER_STATE_PREFIX = "user:"
MAX_ROUNDS = 10  # deliveries a push accepted meanwhile may name their devices: a few


@dataclass(frozen=True, slots=True)
class EndUser:
    """An end user of one project, in one mode (test keys see test data only)."""

    project_id: str
    mode: KeyMode
    user_id: str

    def devices(self) -> QuerySet[Device]:
        return Device.filter(project_id=self.project_id, mode=self.mode, user_id=self.user_id)

    def device_ids(self) -> Subquery:
        return Subquery(self.devices().values("id"))

    def activities(self) -> QuerySet[Activity]:
        on_their_devices = ActivityToken.filter(device_id__in=self.device_ids()).values(
            "activity_id"
        )
        return Activity.filter(project_id=self.project_id, mode=self.mode).filter(
            Q(user_id=self.user_id) | Q(id__in=Subquery(on_their_devices))
        )

    def activity_tokens(self) -> QuerySet[ActivityToken]:
        return ActivityToken.filter(device_id__in=self.device_ids())

    def state_entries(self) -> QuerySet[StateEntry]:
        own = f"{USER_STATE_PREFIX}{self.user_id}"
        if not state.is_key(own):
            return StateEntry.filter(id__in=[])
        return StateEntry.filter(project_id=self.project_id, mode=self.mode).filter(
            Q(key=own) | Q(key__startswith=own + ":")
        )

    def events(self) -> QuerySet[AnalyticsEvent]:
        named = Q(user_id=self.user_id) | Q(device_id__in=self.device_ids())
        return AnalyticsEvent.filter(project_id=self.project_id, mode=self.mode).filter(named)

    def deliveries(self) -> QuerySet[Delivery]:
        return Delivery.filter(device_id__in=self.device_ids())


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erase removed or changed, by kind."""

    devices: int = 0
    activity_tokens: int = 0
    activities_anonymised: int = 0
    state_entries: int = 0
    events: int = 0
    deliveries_anonymised: int = 0
    pushes_anonymised: int = 0
    webhook_events_anonymised: int = 0

    def counts(self) -> dict[str, int]:
        return asdict(self)


async def export(user: EndUser, keyring: KeyRing) -> dict[str, list[Record]]:
    """Everything of ``user``'s, as export records (``controlplane/exports/records.py``)."""
    devices = [records.device(row, keyring) async for row in batched_rows(user.devices())]
    activities = [records.activity(row) async for row in batched_rows(user.activities())]
    tokens = [
        records.activity_token(row, keyring) async for row in batched_rows(user.activity_tokens())
    ]
    entries = [records.state_entry(row) async for row in batched_rows(user.state_entries())]
    events = [records.event(row) async for row in batched_rows(user.events())]
    deliveries = [records.delivery(row) async for row in batched_rows(user.deliveries())]
    return {
        "devices": devices, "activities": activities, "activity_tokens": tokens,
        "state": entries, "events": events, "deliveries": deliveries,
    }  # fmt: skip


def scrub(value: Any, user_id: str) -> Any:
    """``value`` (JSON) without ``user_id``: dropped from lists, null where it was a value."""
    if isinstance(value, dict):
        return {key: scrub(item, user_id) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, user_id) for item in value if item != user_id]
    return None if value == user_id else value


def _names(value: Any, user_id: str) -> bool:
    if isinstance(value, dict):
        return any(_names(item, user_id) for item in value.values())
    if isinstance(value, list):
        return any(_names(item, user_id) for item in value)
    return bool(value == user_id)


_PLAIN = re.compile(r"[A-Za-z0-9 ._:@-]+")  # characters JSON text never escapes


def _may_name(query: QuerySet[ModelT], column: str, user_id: str) -> QuerySet[ModelT]:
    """``query`` narrowed to rows whose JSON ``column``, as text, holds the longest run of
    ``user_id``'s plain characters: every row naming the user, and a few more, found by the
    database rather than by reading the whole project (the caller checks each one). A user id
    without such a run narrows nothing."""
    runs = _PLAIN.findall(user_id)
    if not runs:
        return query
    text = RawSQL(f'CAST("{column}" AS TEXT)')
    return query.annotate(json_text=text).filter(json_text__contains=max(runs, key=len))


async def _scrub_column(query: QuerySet[ModelT], column: str, user_id: str) -> int:
    """Remove ``user_id`` from the JSON ``column`` of every row of ``query`` naming it."""
    changed = 0
    async for row in batched_rows(_may_name(query, column, user_id).only("id", column)):
        value = getattr(row, column)
        if _names(value, user_id):
            await type(row).filter(id=row.pk).update(**{column: scrub(value, user_id)})
            changed += 1
    return changed


async def erase(user: EndUser) -> Erased:
    """Erase ``user``'s data (see the module docstring); returns what went."""
    deliveries = 0
    for _ in range(MAX_ROUNDS):
        if not await wait_until_sent(user.deliveries()):
            logger.warning("erasing an end user while a send to their device is still going")
        not_sending = user.deliveries().filter(
            ~Q(status="sending")
            | Q(lease_until__isnull=True)
            | Q(lease_until__lte=datetime.now(UTC))
        )
        deliveries += await update_in_batches(
            Delivery, not_sending, device_id=None, activity_token_id=None
        )
        if not await user.deliveries().exists():
            break
    tokens = await delete_in_batches(ActivityToken, user.activity_tokens())
    activities = await update_in_batches(
        Activity,
        Activity.filter(project_id=user.project_id, mode=user.mode, user_id=user.user_id),
        user_id=None, attributes={}, content_state={},
    )  # fmt: skip
    events = await delete_in_batches(AnalyticsEvent, user.events())
    devices = await delete_in_batches(Device, user.devices())
    entries = await state.purge_matching(Q(id__in=Subquery(user.state_entries().values("id"))))
    of_project = {"project_id": user.project_id, "mode": user.mode}
    pushes = await _scrub_column(Push.filter(**of_project), "target", user.user_id)
    hooks = await _scrub_column(WebhookEvent.filter(**of_project), "data", user.user_id)
    await _scrub_column(IdempotencyKey.filter(**of_project), "response_body", user.user_id)
    return Erased(
        devices=devices, activity_tokens=tokens, activities_anonymised=activities,
        state_entries=entries, events=events, deliveries_anonymised=deliveries,
        pushes_anonymised=pushes, webhook_events_anonymised=hooks,
    )  # fmt: skip
