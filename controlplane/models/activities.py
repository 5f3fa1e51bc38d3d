"""Live Activities addressed by id (``act_…``), and the tokens they are reached by.

An activity is one thing a user watches on the Lock Screen or in the Dynamic Island — an order
on its way, a match — started by the server (push-to-start) or by the app, then updated and
ended by id. It stores what the Lock Screen shows now (``content_state``) and the
``last_timestamp`` its newest update carried: every update gets a larger one, so a late retry of
an older update can never roll the Lock Screen back (``controlplane/activities.py``).

An activity reaches each device it is on through one :class:`ActivityToken`: on iOS the
activity's own APNs token, reported (and rotated) by the app — a device can carry many
activities, each with its own token, and a token Apple refuses ends that token only; on Android
the device's FCM token (the app renders an ongoing notification). An iOS device sent a
push-to-start holds a ``pending`` token row until the app reports the activity's token.

A broadcast activity (iOS 18) has no per-device tokens for its updates: devices subscribe to its
APNs channel (``channel_id``), and each update is one request to that channel.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from controlplane.models.api_keys import KeyMode
from controlplane.models.devices import Device
from controlplane.models.ids import new_activity_id
from controlplane.models.tenancy import Project


class ActivityStatus(StrEnum):
    STARTING = "starting"  # push-to-start sent, no activity token reported yet
    ACTIVE = "active"
    STALE = "stale"  # past its stale date, not updated since
    ENDED = "ended"  # ended, maybe still on the Lock Screen
    DISMISSED = "dismissed"  # gone from the Lock Screen


OPEN_ACTIVITY_STATUSES = (ActivityStatus.STARTING, ActivityStatus.ACTIVE, ActivityStatus.STALE)


class ActivityTokenStatus(StrEnum):
    PENDING = "pending"  # push-to-start sent; the app has not reported the activity's token
    ACTIVE = "active"
    INVALID = "invalid"  # the provider refused it


class Activity(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_activity_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="activities", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=10)
    activity_type = fields.CharField(max_length=200)
    attributes: fields.Field[dict[str, Any]] = fields.JSONField()
    content_state: fields.Field[dict[str, Any]] = fields.JSONField()
    status = fields.CharEnumField(ActivityStatus, max_length=10)
    started_by = fields.CharField(max_length=10)  # server | app
    user_id = fields.CharField(max_length=200, null=True, db_index=True)
    channel_id = fields.CharField(max_length=200, null=True)  # APNs broadcast channel
    channel_closed_at = fields.DatetimeField(null=True)  # deleted at Apple once dismissed
    stale_date = fields.DatetimeField(null=True)
    dismissal_date = fields.DatetimeField(null=True)
    relevance_score = fields.FloatField(null=True)
    last_timestamp = fields.BigIntField()  # aps.timestamp of the newest update, unix seconds
    version = fields.BigIntField(default=1)  # +1 per content change: the state ETag
    end_reason = fields.CharField(max_length=20, null=True)  # ended | apple_limit
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    updated_at = fields.DatetimeField(auto_now=True)
    ended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "activities"
        # The lifecycle sweep's way in: the open activities, oldest first.
        indexes = (("status", "created_at"),)


class ActivityToken(Model):
    """How one activity reaches one device (see the module docstring)."""

    id = fields.BigIntField(primary_key=True)
    activity: fields.ForeignKeyRelation[Activity] = fields.ForeignKeyField(
        "brik.Activity", related_name="tokens", on_delete=fields.CASCADE
    )
    device: fields.ForeignKeyRelation[Device] = fields.ForeignKeyField(
        "brik.Device", related_name="activity_tokens", on_delete=fields.CASCADE
    )
    platform = fields.CharField(max_length=10)
    token_encrypted = fields.TextField(null=True)  # iOS: the activity's own; Android: None
    token_last_four = fields.CharField(max_length=4, null=True)
    status = fields.CharEnumField(ActivityTokenStatus, max_length=10)
    invalid_reason = fields.CharField(max_length=300, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "activity_tokens"
        unique_together = (("activity", "device"),)
