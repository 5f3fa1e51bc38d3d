"""Writing a push's delivery rows: the one bulk write a 100k-device fan-out waits on.

``POST /v1/pushes`` answers 202 only once every delivery row is committed, so this write is the
accept latency of a large push. On PostgreSQL each chunk of rows goes in as *one* statement,
``INSERT … SELECT FROM unnest(…)`` with one array parameter per column, instead of Tortoise's
``bulk_create`` (a model object per row, then one INSERT per row): about three times faster
end to end for a 20,000-device push (see loadtests/). Other databases — SQLite for
``brik-cloud dev`` — use ``bulk_create``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from controlplane.models import Delivery, DeliveryStatus, Push
from controlplane.models.ids import new_delivery_id

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
SELECT row.id, $1, row.device_id, row.provider, row.platform, row.apns_id,
    row.activity_token_id, row.channel_id, $2, 0, $3
FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[],
            $10::text[])
    AS row(id, device_id, provider, platform, apns_id, activity_token_id, channel_id)
"""


async def insert_deliveries(
    push: Push, recipients: list[Destination], providers: dict[str, str]
) -> list[str]:
    """One queued delivery per destination; returns their ids, in order.

    Runs on the caller's connection, so inside its transaction. Every delivery gets its
    ``apns-id`` now, kept for every attempt.
    """
    client = Delivery._meta.db
    ids: list[str] = []
    for start in range(0, len(recipients), CHUNK):
        chunk = recipients[start : start + CHUNK]
        chunk_ids = [new_delivery_id() for _ in chunk]
        apns_ids = [str(uuid.uuid4()) for _ in chunk]
        if client.capabilities.dialect == "postgres":
            await client.execute_query(_UNNEST_INSERT, [
                push.id, DeliveryStatus.QUEUED.value, datetime.now(UTC), chunk_ids,
                [d.device_id for d in chunk], [providers[d.platform] for d in chunk],
                [d.platform for d in chunk], apns_ids, [d.activity_token_id for d in chunk],
                [d.channel_id for d in chunk],
            ])  # fmt: skip
        else:
            await Delivery.bulk_create([
                Delivery(id=delivery_id, push=push, device_id=d.device_id, platform=d.platform,
                         provider=providers[d.platform], apns_id=apns_id,
                         activity_token_id=d.activity_token_id, channel_id=d.channel_id)
                for delivery_id, apns_id, d in zip(chunk_ids, apns_ids, chunk, strict=True)
            ])  # fmt: skip
        ids += chunk_ids
    return ids
