"""Outbound webhooks: a project's endpoints, the events it emits, and their deliveries.

An event is written in the transaction of the change it tells of, together with one delivery
row per endpoint that wants it (the *outbox*): the change and its events commit or roll back
together, so an event is never lost nor told of a change that did not happen. From then on the
delivery rows are the truth the workers work from, as with pushes: each moves
``queued → sending → succeeded | failed`` through conditional updates under a lease.

Events about the same object (a push and its deliveries, one device, one activity) carry the
same ``ordering_key``. An endpoint gets them in the order they were committed: a delivery whose
endpoint has an earlier one of the same key still under way waits (``waiting``) and is queued
when that one is settled (``workers/tasks/webhooks.py``). ``WebhookEvent.id`` is a sequence for
exactly that; events are named to tenants by ``public_id`` (``wev_…``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import (
    new_webhook_delivery_id,
    new_webhook_endpoint_id,
    new_webhook_event_id,
)
from controlplane.models.tenancy import Project


class EndpointType(StrEnum):
    """What an endpoint receives: Brik's signed JSON event, or a message for people to read in
    a Slack or Discord channel (their incoming-webhook formats)."""

    WEBHOOK = "webhook"
    SLACK = "slack"
    DISCORD = "discord"


class WebhookDeliveryStatus(StrEnum):
    WAITING = "waiting"  # an earlier event about the same object is not settled yet
    QUEUED = "queued"  # due now, or at next_attempt_at (a retry)
    SENDING = "sending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # gave up, refused by the address policy, or the endpoint was disabled


PENDING_WEBHOOK_STATUSES = (
    WebhookDeliveryStatus.WAITING,
    WebhookDeliveryStatus.QUEUED,
    WebhookDeliveryStatus.SENDING,
)


class WebhookEndpoint(Model):
    """Where a project's events go, in one mode (test-mode events to test-mode endpoints).

    The URL (Slack's and Discord's are credentials themselves) and the signing secrets are
    stored encrypted with the key ring; ``url_display`` is what answers show. A rotated secret
    stays in ``previous_secret_encrypted`` and signs too until ``previous_secret_expires_at``.
    """

    id = fields.CharField(max_length=32, primary_key=True, default=new_webhook_endpoint_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="webhook_endpoints", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=4)
    type = fields.CharEnumField(EndpointType, max_length=10, default=EndpointType.WEBHOOK)
    url_encrypted = fields.TextField()
    url_display = fields.CharField(max_length=2048)
    description = fields.CharField(max_length=500, null=True)
    events: fields.Field[list[str]] = fields.JSONField()
    enabled = fields.BooleanField(default=True)
    disabled_reason = fields.CharField(max_length=500, null=True)
    disabled_at = fields.DatetimeField(null=True)
    secret_encrypted = fields.TextField()
    previous_secret_encrypted = fields.TextField(null=True)
    previous_secret_expires_at = fields.DatetimeField(null=True)
    consecutive_failures = fields.IntField(default=0)
    failing_since = fields.DatetimeField(null=True)
    last_success_at = fields.DatetimeField(null=True)
    last_failure_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "webhook_endpoints"
        indexes = (("project_id", "mode", "enabled"),)


class WebhookEvent(Model):
    """Something that happened, as the endpoints that wanted it are told (``data``)."""

    id = fields.BigIntField(primary_key=True)  # the commit order endpoints see per object
    public_id = fields.CharField(max_length=32, unique=True, default=new_webhook_event_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="webhook_events", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=4)
    type = fields.CharField(max_length=64)
    data: fields.Field[dict[str, Any]] = fields.JSONField()
    ordering_key = fields.CharField(max_length=64, null=True)
    # Events told once however often their cause repeats (a credential failing on every send).
    dedupe_key = fields.CharField(max_length=200, null=True, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_events"


class WebhookDelivery(Model):
    """One event to one endpoint: its attempts so far and how the last one went."""

    id = fields.CharField(max_length=32, primary_key=True, default=new_webhook_delivery_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="webhook_deliveries", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=4)
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "brik.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE
    )
    event: fields.ForeignKeyRelation[WebhookEvent] = fields.ForeignKeyField(
        "brik.WebhookEvent", related_name="deliveries", on_delete=fields.CASCADE
    )
    ordering_key = fields.CharField(max_length=64, null=True)
    trigger = fields.CharField(max_length=10, default="event")  # event | test | resend
    status = fields.CharEnumField(WebhookDeliveryStatus, max_length=10)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    lease_token = fields.CharField(max_length=32, null=True)
    lease_until = fields.DatetimeField(null=True)
    response_status = fields.IntField(null=True)
    response_excerpt = fields.TextField(null=True)
    latency_ms = fields.IntField(null=True)
    error = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_attempt_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_deliveries"
        indexes = (
            ("status", "next_attempt_at"),  # the dispatcher's way in
            ("endpoint_id", "ordering_key", "status"),  # who is next in line
            ("endpoint_id", "created_at"),  # the delivery log
        )
