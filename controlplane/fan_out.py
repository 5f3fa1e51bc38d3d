"""Writing a push's delivery rows: the one bulk write a 100k-device fan-out waits on — and
the pushes of a batch (``POST /v1/pushes/batch``), written the same way.

``POST /v1/pushes`` answers 202 only once every delivery row is committed, so this write is the
accept latency of a large push. On PostgreSQL each chunk of rows goes in as *one* statement,
``INSERT … SELECT FROM unnest(…)`` with one array parameter per column, instead of Tortoise's
``bulk_create`` (a model object per row, then one INSERT per row): about three times faster
end to end for a 20,000-device push (see loadtests/). A batch's pushes go in as one such
statement too, and all their deliveries as one. Other databases — SQLite for
``brik-cloud dev`` — use ``bulk_create``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controlplane.models import Delivery, DeliveryStatus, KeyMode, Push, PushStatus
from controlplane.models.ids import new_ids, new_uuids

CHUNK = 5000  # rows per statement


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one delivery goes: a device (on its platform), through a Live Activity's token on
    it when ``activity_token_id`` is set — or, for a broadcast, an APNs channel (no device)."""

    device_id: str | None
    platform: str
    activity_token_id: int | None = None
    channel_id: str | None = None


_UNNEST_INSERT = """
INSERT INTO "deliveries"
    ("id", "push_id", "device_id", "provider", "platform", "apns_id", "activity_token_id",
     "channel_id", "status", "attempts", "created_at")
SELECT row.id, ($3::text[])[row.push_at], row.device_id, row.provider, row.platform,
    row.apns_id, row.activity_token_id, row.channel_id, $1, 0, $2
FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::bigint[], $11::text[])
    AS row(id, push_at, device_id, provider, platform, apns_id, activity_token_id, channel_id)
"""  # each row names its push by position in $3: a 100k fan-out sends one push id, not 100k

_UNNEST_INSERT_PUSHES = """
INSERT INTO "pushes"
    ("id", "project_id", "mode", "kind", "content", "target", "status", "collapse_id",
     "activity_id", "send_at", "recipients", "created_at", "completed_at")
SELECT row.id, $1, $2, row.kind, row.content::jsonb, row.target::jsonb, row.status,
    row.collapse_id, row.activity_id, row.send_at, row.recipients, $3, row.completed_at
FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::timestamptz[], $11::int[], $12::timestamptz[], $13::text[])
    AS row(id, kind, content, target, status, collapse_id, send_at, recipients, completed_at,
           activity_id)
"""


# One push and its deliveries in one statement: the push is inserted by a data-modifying WITH,
# and the deliveries' foreign key is checked when the statement ends, by when it is there.
_WITH_ONE_PUSH = """
WITH pushed AS (
    INSERT INTO "pushes"
        ("id", "project_id", "mode", "kind", "content", "target", "status", "collapse_id",
         "activity_id", "send_at", "recipients", "created_at", "completed_at")
    VALUES ($12, $13, $14, $15, $16::jsonb, $17::jsonb, $18, $19, $20, $21, $22, $23, $24)
)
"""


@dataclass(slots=True)
class NewPush:
    """A push of a batch, as it is inserted (plain values: building a model per push cost
    more than the insert)."""

    id: str
    kind: str
    content: dict[str, Any]
    target: dict[str, Any]
    status: PushStatus
    collapse_id: str | None
    send_at: datetime | None
    recipients: int
    completed_at: datetime | None
    activity_id: str | None = None

    def as_model(self, project_id: str, mode: KeyMode, created_at: datetime) -> Push:
        """The push as the model it was stored as (marked stored: saving it updates it)."""
        push = Push(
            id=self.id, project_id=project_id, mode=mode, kind=self.kind, content=self.content,
            target=self.target, status=self.status, collapse_id=self.collapse_id,
            send_at=self.send_at, recipients=self.recipients, created_at=created_at,
            completed_at=self.completed_at, activity_id=self.activity_id,
        )  # fmt: skip
        push._saved_in_db = True
        return push


async def insert_pushes(
    project_id: str, mode: KeyMode, created_at: datetime, pushes: Sequence[NewPush]
) -> None:
    """Insert ``pushes`` (of one project and mode, created at one moment) in one statement, on
    the caller's connection."""
    if not pushes:
        return
    client = Push._meta.db
    if client.capabilities.dialect != "postgres":
        await Push.bulk_create([push.as_model(project_id, mode, created_at) for push in pushes])
        return
    await client.execute_query(_UNNEST_INSERT_PUSHES, [
        project_id, mode.value, created_at, [push.id for push in pushes],
        [push.kind for push in pushes],
        [json.dumps(push.content, separators=(",", ":")) for push in pushes],
        [json.dumps(push.target, separators=(",", ":")) for push in pushes],
        [push.status.value for push in pushes], [push.collapse_id for push in pushes],
        [push.send_at for push in pushes], [push.recipients for push in pushes],
        [push.completed_at for push in pushes], [push.activity_id for push in pushes],
    ])  # fmt: skip


async def insert_push(
    project_id: str, mode: KeyMode, created_at: datetime, push: NewPush,
    destinations: list[Destination], providers: dict[str, str],
) -> list[str]:  # fmt: skip
    """Insert ``push`` and one queued delivery per destination (on the caller's connection);
    returns the deliveries' ids, in order. On PostgreSQL a push of up to :data:`CHUNK`
    destinations is one statement — the everyday send's one round trip instead of two."""
    client = Delivery._meta.db
    if client.capabilities.dialect != "postgres" or len(destinations) > CHUNK:
        await insert_pushes(project_id, mode, created_at, [push])
        return (await insert_deliveries_of([(push, destinations)], providers))[0]
    ids = new_ids("dlv", len(destinations))
    await client.execute_query(_WITH_ONE_PUSH + _UNNEST_INSERT, [
        DeliveryStatus.QUEUED.value, datetime.now(UTC), [push.id], ids,
        [1] * len(destinations), [d.device_id for d in destinations],
        [providers[d.platform] for d in destinations], [d.platform for d in destinations],
        new_uuids(len(destinations)), [d.activity_token_id for d in destinations],
        [d.channel_id for d in destinations],
        push.id, project_id, mode.value, push.kind,
        json.dumps(push.content, separators=(",", ":")),
        json.dumps(push.target, separators=(",", ":")), push.status.value, push.collapse_id,
        push.activity_id, push.send_at, push.recipients, created_at, push.completed_at,
    ])  # fmt: skip
    return ids


async def insert_deliveries_of(
    pushes: Sequence[tuple[Push | NewPush, list[Destination]]], providers: dict[str, str]
) -> list[list[str]]:
    """One queued delivery per destination of each push; each push's delivery ids, in order.

    Runs on the caller's connection, so inside its transaction. Every delivery gets its
    ``apns-id`` now, kept for every attempt.
    """
    client = Delivery._meta.db
    push_ids = [push.id for push, _ in pushes]
    # (the push's position in push_ids, from 1 as PostgreSQL counts, and the destination)
    rows = [(at, d) for at, (_, destinations) in enumerate(pushes, 1) for d in destinations]
    ids = new_ids("dlv", len(rows))
    every_apns_id = new_uuids(len(rows))
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        chunk_ids = ids[start : start + CHUNK]
        apns_ids = every_apns_id[start : start + CHUNK]
        if client.capabilities.dialect == "postgres":
            await client.execute_query(_UNNEST_INSERT, [
                DeliveryStatus.QUEUED.value, datetime.now(UTC), push_ids, chunk_ids,
                [at for at, _ in chunk], [d.device_id for _, d in chunk],
                [providers[d.platform] for _, d in chunk], [d.platform for _, d in chunk],
                apns_ids, [d.activity_token_id for _, d in chunk],
                [d.channel_id for _, d in chunk],
            ])  # fmt: skip
        else:
            await Delivery.bulk_create([
                Delivery(id=delivery_id, push_id=push_ids[at - 1], device_id=d.device_id,
                         platform=d.platform, provider=providers[d.platform], apns_id=apns_id,
                         activity_token_id=d.activity_token_id, channel_id=d.channel_id)
                for delivery_id, apns_id, (at, d) in zip(chunk_ids, apns_ids, chunk, strict=True)
            ])  # fmt: skip
    by_push: list[list[str]] = []
    taken = 0
    for _, destinations in pushes:
        by_push.append(ids[taken : taken + len(destinations)])
        taken += len(destinations)
    return by_push
