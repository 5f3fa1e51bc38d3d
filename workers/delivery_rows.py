"""The delivery rows a run holds: claiming them, ending them, completing their pushes.

A delivery row is sent only by the run that claimed it: the claim sets ``sending``, a fresh
lease token and the lease's end, and counts the attempt, on rows that are queued and due or
whose lease ran out — so two workers handed the same rows never both send one. The claimed
rows are read back with what sending them needs from their device (its tokens, its status)
and from their Live Activity token, as plain values: hydrating ORM models cost more CPU than
the HTTP/2 send itself (see loadtests/). A row is ended (delivered, failed, …) only while the
run still holds its lease, and a push is completed once none of its deliveries is open.

On PostgreSQL these are statements written out once rather than built by the ORM for every
chunk, and the claim and its read are one (``UPDATE … RETURNING`` joined to the devices): the
everyday one-device send costs the worker three round trips to the database where it cost
five. SQLite, the embedded default, runs the ORM's equivalent statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.expressions import F, Q, Subquery

from controlplane.models import TOKEN_COLUMNS, Delivery, DeliveryStatus, Push, PushStatus
from controlplane.push_locks import in_id_order

OPEN_STATUSES = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
STILL_MOVING = (PushStatus.QUEUED, PushStatus.SENDING, PushStatus.SCHEDULED)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this run holds the lease on, with what sending it needs from its device."""

    id: str
    push_id: str
    provider: str
    platform: str
    apns_id: str
    attempts: int
    device_id: str | None
    device_status: str | None
    token_encrypted: str | None
    live_activity_token_encrypted: str | None
    push_to_start_token_encrypted: str | None
    widget_push_token_encrypted: str | None
    activity_token_id: int | None = None  # a Live Activity addressed by id: its token here
    activity_token_encrypted: str | None = None
    activity_token_status: str | None = None
    channel_id: str | None = None  # a broadcast: the APNs channel, no device
    reason: str | None = None  # why the last attempt did not deliver it (a retry), if one did


CLAIMED_FIELDS = (
    "id", "push_id", "provider", "platform", "apns_id", "attempts", "device_id",
    "activity_token_id", "channel_id", "reason",
)  # fmt: skip
CLAIMED_DEVICE_FIELDS = {
    "activity_token_encrypted": "activity_token__token_encrypted",
    "activity_token_status": "activity_token__status",
    "device_status": "device__status",
    **{column: f"device__{column}" for column in TOKEN_COLUMNS.values()},
}

# The claim of the module docstring in one statement. The push rows are locked first, in id
# order (controlplane/push_locks.py), as the ORM's subquery does; a canceled push's rows are
# not claimed.
_CLAIM = f"""
WITH open_pushes AS (
    SELECT "id" FROM "pushes" WHERE "id" = ANY($1::text[]) AND "status" <> $2
    ORDER BY "id" FOR NO KEY UPDATE
), claimed AS (
    UPDATE "deliveries" SET "status" = $3, "lease_token" = $4, "lease_until" = $5,
        "attempts" = "attempts" + 1, "sent_at" = $6
    WHERE "id" = ANY($7::text[]) AND "push_id" IN (SELECT "id" FROM open_pushes)
        AND (("status" = $8 AND ("next_attempt_at" IS NULL OR "next_attempt_at" <= $6))
             OR ("status" = $3 AND "lease_until" < $6))
    RETURNING {", ".join(f'"{name}"' for name in CLAIMED_FIELDS)}
)
SELECT claimed.*, device."status" AS device_status,
    {", ".join(f'device."{column}"' for column in TOKEN_COLUMNS.values())},
    token."token_encrypted" AS activity_token_encrypted, token."status" AS activity_token_status
FROM claimed
LEFT JOIN "devices" AS device ON device."id" = claimed."device_id"
LEFT JOIN "activity_tokens" AS token ON token."id" = claimed."activity_token_id"
"""


_END = """
UPDATE "deliveries" SET "status" = $1, "reason" = $2, "completed_at" = $3,
    "lease_token" = NULL, "lease_until" = NULL
WHERE "id" = ANY($4::text[]) AND "lease_token" = $5
"""

# Pushes still moving none of whose deliveries is open, locked in id order (push_locks).
_COMPLETE = """
UPDATE "pushes" SET "status" = $1, "completed_at" = $2
WHERE "id" IN (
    SELECT "id" FROM "pushes" AS push
    WHERE push."id" = ANY($3::text[]) AND push."status" = ANY($4::text[])
        AND NOT EXISTS (SELECT 1 FROM "deliveries" WHERE "push_id" = push."id"
                        AND "status" = ANY($5::text[]))
    ORDER BY "id" FOR NO KEY UPDATE
)
RETURNING "id"
"""


def _on_postgres() -> bool:
    return bool(Delivery._meta.db.capabilities.dialect == "postgres")


async def claim(
    delivery_ids: Sequence[str], push_ids: Sequence[str], now: datetime, lease: str,
    lease_seconds: float,
) -> list[Claimed]:  # fmt: skip
    """Claim those of ``delivery_ids`` (of ``push_ids``) that may be sent now under ``lease``,
    until ``lease_seconds`` from ``now``; the rows claimed."""
    lease_until = now + timedelta(seconds=lease_seconds)
    if _on_postgres():
        _, rows = await Delivery._meta.db.execute_query(_CLAIM, [
            list(push_ids), PushStatus.CANCELED.value, DeliveryStatus.SENDING.value, lease,
            lease_until, now, list(delivery_ids), DeliveryStatus.QUEUED.value,
        ])  # fmt: skip
        return [Claimed(**dict(row)) for row in rows]
    claimed = await Delivery.filter(
        _claimable(now), id__in=delivery_ids, push_id__in=_pushes_still_open(push_ids)
    ).update(
        status=DeliveryStatus.SENDING, lease_token=lease, lease_until=lease_until,
        attempts=F("attempts") + 1, sent_at=now,
    )  # fmt: skip
    if not claimed:
        return []
    values = await Delivery.filter(id__in=delivery_ids, lease_token=lease).values(
        *CLAIMED_FIELDS, **CLAIMED_DEVICE_FIELDS
    )
    return [Claimed(**row) for row in values]


async def end(
    delivery_ids: Sequence[str], lease: str, status: DeliveryStatus, reason: str | None,
    now: datetime,
) -> None:  # fmt: skip
    """End those of ``delivery_ids`` this run still holds under ``lease`` with ``status``."""
    if _on_postgres():
        await Delivery._meta.db.execute_query(
            _END, [status.value, reason, now, list(delivery_ids), lease]
        )
        return
    await Delivery.filter(id__in=delivery_ids, lease_token=lease).update(
        status=status, reason=reason, completed_at=now, lease_token=None, lease_until=None
    )


async def complete(push_ids: Sequence[str], now: datetime) -> int:
    """Complete those of ``push_ids`` still moving none of whose deliveries is open (the check
    and the change in one conditional statement); how many."""
    if _on_postgres():
        return len(await complete_which(push_ids, now))
    return await _complete_by_orm(push_ids, now)


async def complete_which(push_ids: Sequence[str], now: datetime) -> list[str]:
    """:func:`complete`, saying which of ``push_ids`` it completed (in the caller's
    transaction, so their events can be written with it)."""
    if _on_postgres():
        rows = await Push._meta.db.execute_query_dict(_COMPLETE, [
            PushStatus.COMPLETED.value, now, list(push_ids), [s.value for s in STILL_MOVING],
            [s.value for s in OPEN_STATUSES],
        ])  # fmt: skip
        return [str(row["id"]) for row in rows]
    # The ORM's UPDATE says how many, not which: one conditional statement per push.
    return [push_id for push_id in push_ids if await _complete_by_orm([push_id], now)]


async def _complete_by_orm(push_ids: Sequence[str], now: datetime) -> int:
    open_deliveries = Delivery.filter(push_id__in=push_ids, status__in=OPEN_STATUSES)
    finished = Push.filter(id__in=push_ids, status__in=STILL_MOVING).exclude(
        id__in=Subquery(open_deliveries.values("push_id"))
    )
    return int(
        await Push.filter(id__in=in_id_order(finished)).update(
            status=PushStatus.COMPLETED, completed_at=now
        )
    )


def _claimable(now: datetime) -> Q:
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return (Q(status=DeliveryStatus.QUEUED) & due) | Q(
        status=DeliveryStatus.SENDING, lease_until__lt=now
    )


def _pushes_still_open(push_ids: Sequence[str]) -> Subquery:
    """The pushes, unless canceled (or deleted with their project) — locked for the claim.

    The claim locks the push rows (``FOR NO KEY UPDATE``, in id order:
    :mod:`controlplane.push_locks`) before any delivery row: canceling a push
    (``controlplane/project_deletion.py``) waits for a claim under way, and a claim waits for
    the cancel and then finds the push canceled. So once a cancel has committed no delivery of
    the push is claimed, and every claim made before it is already visible as ``sending`` —
    which is what the deletion waits for. Claims of one push run one after the other
    (milliseconds each); SQLite has no row locks and serialises every write anyway.
    """
    return in_id_order(Push.filter(id__in=push_ids).exclude(status=PushStatus.CANCELED))
