"""Rows as export records: plain JSON objects, one shape wherever a row leaves Brik.

An export is the tenant's own data going out, so a device's push tokens are in it decrypted —
they are what another instance (or another provider) needs to reach the same phones. Ids,
times (ISO 8601, UTC) and statuses are as the API shows them; ``schema`` in an archive's
manifest (:data:`SCHEMA_VERSION`) changes whenever a record's shape does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar

from tortoise.models import Model
from tortoise.queryset import QuerySet

from controlplane.crypto import KeyRing
from controlplane.models import (
    TOKEN_COLUMNS,
    Activity,
    ActivityToken,
    AnalyticsEvent,
    Delivery,
    Device,
    Push,
    StateEntry,
)

SCHEMA_VERSION = 1
BATCH = 1000  # rows per query when reading for an export
Record = dict[str, Any]
ModelT = TypeVar("ModelT", bound=Model)


async def batched_rows(query: QuerySet[ModelT], order: str = "id") -> AsyncIterator[ModelT]:
    """Every row of ``query``, :data:`BATCH` at a time, in ``order`` (a unique column): keyset
    pages, so an export never holds a whole table in memory."""
    last: Any = None
    while True:
        page = query.order_by(order).limit(BATCH)
        if last is not None:
            page = page.filter(**{f"{order}__gt": last})
        rows = await page
        for row in rows:
            yield row
        if len(rows) < BATCH:
            return
        last = getattr(rows[-1], order)


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _decrypt(keyring: KeyRing, encrypted: str | None) -> str | None:
    return keyring.decrypt(encrypted).decode() if encrypted is not None else None


def device(row: Device, keyring: KeyRing) -> Record:
    tokens = {slot.value: _decrypt(keyring, getattr(row, column))
              for slot, column in TOKEN_COLUMNS.items()}  # fmt: skip
    return {
        "id": row.id, "mode": row.mode.value, "platform": row.platform.value,
        "token": tokens["device"], "live_activity_token": tokens["live_activity"],
        "push_to_start_token": tokens["push_to_start"], "widget_push_token": tokens["widget"],
        "user_id": row.user_id, "tags": list(row.tags), "status": row.status.value,
        "invalid_reason": row.invalid_reason, "invalidated_at": _time(row.invalidated_at),
        "created_at": _time(row.created_at), "updated_at": _time(row.updated_at),
    }  # fmt: skip


def activity(row: Activity) -> Record:
    return {
        "id": row.id, "mode": row.mode.value, "activity_type": row.activity_type,
        "attributes": row.attributes, "content_state": row.content_state,
        "status": row.status.value, "started_by": row.started_by, "user_id": row.user_id,
        "channel_id": row.channel_id, "channel_closed_at": _time(row.channel_closed_at),
        "stale_date": _time(row.stale_date), "dismissal_date": _time(row.dismissal_date),
        "relevance_score": row.relevance_score, "last_timestamp": row.last_timestamp,
        "version": row.version, "end_reason": row.end_reason,
        "created_at": _time(row.created_at), "updated_at": _time(row.updated_at),
        "ended_at": _time(row.ended_at),
    }  # fmt: skip


def activity_token(row: ActivityToken, keyring: KeyRing) -> Record:
    return {
        "activity_id": row.activity_id, "device_id": row.device_id,  # type: ignore[attr-defined]
        "platform": row.platform, "token": _decrypt(keyring, row.token_encrypted),
        "status": row.status.value, "invalid_reason": row.invalid_reason,
        "created_at": _time(row.created_at), "updated_at": _time(row.updated_at),
    }  # fmt: skip


def state_entry(row: StateEntry) -> Record:
    return {
        "key": row.key, "mode": row.mode.value, "value": row.value, "public": row.public,
        "version": row.version, "expires_at": _time(row.expires_at),
        "created_at": _time(row.created_at), "updated_at": _time(row.updated_at),
    }  # fmt: skip


def push(row: Push) -> Record:
    return {
        "id": row.id, "mode": row.mode.value, "kind": row.kind, "content": row.content,
        "target": row.target, "status": row.status.value, "collapse_id": row.collapse_id,
        "activity_id": row.activity_id,  # type: ignore[attr-defined]
        "send_at": _time(row.send_at), "recipients": row.recipients,
        "created_at": _time(row.created_at), "completed_at": _time(row.completed_at),
        "canceled_at": _time(row.canceled_at),
    }  # fmt: skip


def delivery(row: Delivery) -> Record:
    return {
        "id": row.id, "push_id": row.push_id,  # type: ignore[attr-defined]
        "device_id": row.device_id,  # type: ignore[attr-defined]
        "channel_id": row.channel_id, "provider": row.provider, "platform": row.platform,
        "apns_id": row.apns_id, "status": row.status.value, "reason": row.reason,
        "attempts": row.attempts, "created_at": _time(row.created_at),
        "sent_at": _time(row.sent_at), "completed_at": _time(row.completed_at),
    }  # fmt: skip


_EVENT_FIELDS = (
    "name", "device_id", "user_id", "platform", "app_version", "os_version", "device_model",
    "locale", "country", "widget", "action", "activity_id", "push_id", "error_code",
    "error_message", "properties",
)  # fmt: skip


def event(row: AnalyticsEvent) -> Record:
    record: Record = {"id": row.client_id, "mode": row.mode.value}
    record.update({name: getattr(row, name) for name in _EVENT_FIELDS})
    record["timestamp"] = _time(row.occurred_at)
    record["received_at"] = _time(row.received_at)
    return record
