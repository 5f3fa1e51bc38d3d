"""Pushes (one send request) and their deliveries (one per device), and idempotency keys.

A push is accepted only once it and all its deliveries are committed; from then on the
delivery rows are the truth the workers work from: each moves ``queued → sending → final``
through conditional updates under a lease (``lease_token`` / ``lease_until``), so a job that
runs twice, or late, never sends a row whose result is recorded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from controlplane.models.activities import Activity, ActivityToken
from controlplane.models.api_keys import KeyMode
from controlplane.models.devices import Device
from controlplane.models.ids import new_delivery_id, new_push_id
from controlplane.models.tenancy import Project


class PushStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    COMPLETED = "completed"
    CANCELED = "canceled"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    INVALID_TOKEN = "invalid_token"
    RATE_LIMITED = "rate_limited"
    CANCELED = "canceled"
    SUPERSEDED = "superseded"  # a newer update of its Live Activity was accepted before it went


FINAL_DELIVERY_STATUSES = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.FAILED,
        DeliveryStatus.INVALID_TOKEN,
        DeliveryStatus.RATE_LIMITED,
        DeliveryStatus.CANCELED,
        DeliveryStatus.SUPERSEDED,
    }
)


class Push(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_push_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="pushes", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=10)
    kind = fields.CharField(max_length=20)
    content: fields.Field[dict[str, Any]] = fields.JSONField()
    target: fields.Field[dict[str, Any]] = fields.JSONField()
    status = fields.CharEnumField(PushStatus, max_length=12)
    collapse_id = fields.CharField(max_length=64, null=True)
    activity: fields.ForeignKeyNullableRelation[Activity] = fields.ForeignKeyField(
        "brik.Activity", related_name="pushes", on_delete=fields.CASCADE, null=True
    )  # the Live Activity this push starts, updates or ends
    send_at = fields.DatetimeField(null=True)
    recipients = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    completed_at = fields.DatetimeField(null=True)
    canceled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "pushes"
        # The reconciler's way in: the few open pushes, then their deliveries.
        indexes = (("status", "send_at"),)


class Delivery(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_delivery_id)
    push: fields.ForeignKeyRelation[Push] = fields.ForeignKeyField(
        "brik.Push", related_name="deliveries", on_delete=fields.CASCADE
    )
    device: fields.ForeignKeyNullableRelation[Device] = fields.ForeignKeyField(
        "brik.Device", related_name="deliveries", on_delete=fields.SET_NULL, null=True
    )
    # A Live Activity's delivery goes through the activity's token on that device; a broadcast
    # activity's update goes once to its APNs channel (no device).
    activity_token: fields.ForeignKeyNullableRelation[ActivityToken] = fields.ForeignKeyField(
        "brik.ActivityToken", related_name="deliveries", on_delete=fields.SET_NULL, null=True
    )
    channel_id = fields.CharField(max_length=200, null=True)
    provider = fields.CharField(max_length=10)  # apns | fcm | sandbox
    platform = fields.CharField(max_length=10)
    apns_id = fields.CharField(max_length=36)  # the same on every attempt
    status = fields.CharEnumField(DeliveryStatus, max_length=16, default=DeliveryStatus.QUEUED)
    reason = fields.CharField(max_length=500, null=True)
    attempts = fields.IntField(default=0)
    lease_token = fields.CharField(max_length=32, null=True)
    lease_until = fields.DatetimeField(null=True)
    next_attempt_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "deliveries"
        # Deliveries are found by id (the claim) or by push. No index leads with status: the
        # planner took one for the claim and scanned every queued row of a fan-out per chunk.
        indexes = (("push_id", "status"),)


class IdempotencyKey(Model):
    """The first answer to a request with an ``Idempotency-Key``, replayed for its retries.

    Scoped per project *and* mode (the API key's): a test-mode request never answers for a
    live one, nor claims a key production will use.
    """

    id = fields.BigIntField(primary_key=True)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="idempotency_keys", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=4)
    key = fields.CharField(max_length=255)
    request_hash = fields.CharField(max_length=64)
    status = fields.CharField(max_length=12)  # in_flight | completed
    response_status = fields.IntField(null=True)
    response_body: fields.Field[Any] = fields.JSONField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "idempotency_keys"
        unique_together = (("project", "mode", "key"),)
