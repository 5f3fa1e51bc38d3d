"""Devices a tenant registered: where pushes go.

The push token is a secret of the tenant's users, so it is stored encrypted
(``token_encrypted``) and found by a keyed hash (``token_hash``: HMAC with the server pepper,
``BRIK_SECRET_KEY``, whose id is ``pepper_id``), never in the clear. While the secret key
rotates, a device is found by its hash under any key of the ring and re-hashed under the
current one by its next registration or by ``brik-cloud rotate-secret-key``.

A device belongs to a project *and a mode*: devices registered with test keys only ever
receive test-mode pushes (the sandbox), and live ones live pushes. A device a provider refused
becomes ``invalid`` with the reason and time, and is never sent to again. A refused Live
Activity, push-to-start or widget push token belongs to one purpose, not to the
phone: only that token is cleared, and the device stays ``active`` for everything else.

Which of a device's tokens a push goes to is a :class:`TokenSlot`, declared by each provider's
push-type table (``workers/providers/``); :data:`TOKEN_COLUMNS` says where each slot of the
device row is stored. One slot is not on the device row: :attr:`TokenSlot.ACTIVITY`, a Live
Activity's own token on the device when Brik addresses the activity by id, is an
:class:`~controlplane.models.activities.ActivityToken` (one per activity and device).
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import new_device_id
from controlplane.models.tenancy import Project


class Platform(StrEnum):
    IOS = "ios"
    ANDROID = "android"


class DeviceStatus(StrEnum):
    ACTIVE = "active"
    INVALID = "invalid"


class TokenSlot(StrEnum):
    """Which of a device's push tokens a push goes to."""

    DEVICE = "device"  # the app's own APNs device token or FCM registration token
    LIVE_ACTIVITY = "live_activity"  # iOS: the device's Live Activity token (updates, ends)
    # iOS: the token of the activity a push addresses by id (/v1/activities), one per activity
    # on the device — an ActivityToken row, not a column of the device
    ACTIVITY = "activity"
    PUSH_TO_START = "push_to_start"  # iOS 17.2+: starts a Live Activity
    WIDGET = "widget"  # iOS 26+: WidgetKit's push token (WidgetPushHandler)


# Where each slot of the device row is stored (encrypted), and what a tenant calls it.
TOKEN_COLUMNS: dict[TokenSlot, str] = {
    TokenSlot.DEVICE: "token_encrypted",
    TokenSlot.LIVE_ACTIVITY: "live_activity_token_encrypted",
    TokenSlot.PUSH_TO_START: "push_to_start_token_encrypted",
    TokenSlot.WIDGET: "widget_push_token_encrypted",
}
TOKEN_NAMES: dict[TokenSlot, str] = {
    TokenSlot.DEVICE: "device token",
    TokenSlot.LIVE_ACTIVITY: "Live Activity token",
    TokenSlot.PUSH_TO_START: "push-to-start token",
    TokenSlot.WIDGET: "widget push token",
}


class Device(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_device_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="devices", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=10)
    platform = fields.CharEnumField(Platform, max_length=10)
    token_hash = fields.CharField(max_length=64)
    pepper_id = fields.CharField(max_length=16, null=True)  # which secret key hashed it
    token_encrypted = fields.TextField()
    token_last_four = fields.CharField(max_length=4)
    user_id = fields.CharField(max_length=200, null=True, db_index=True)
    tags: fields.Field[list[str]] = fields.JSONField(default=list)
    live_activity_token_encrypted = fields.TextField(null=True)
    push_to_start_token_encrypted = fields.TextField(null=True)
    widget_push_token_encrypted = fields.TextField(null=True)
    status = fields.CharEnumField(DeviceStatus, max_length=10, default=DeviceStatus.ACTIVE)
    invalid_reason = fields.CharField(max_length=300, null=True)
    invalidated_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "devices"
        unique_together = (("project", "mode", "token_hash"),)


class DeviceTag(Model):
    """One tag of one device: the index pushes ``to: {"tags": [...]}`` are resolved with."""

    id = fields.BigIntField(primary_key=True)
    device: fields.ForeignKeyRelation[Device] = fields.ForeignKeyField(
        "brik.Device", related_name="tag_rows", on_delete=fields.CASCADE
    )
    tag = fields.CharField(max_length=64)

    class Meta:
        table = "device_tags"
        unique_together = (("device", "tag"),)
        indexes = (("tag", "device_id"),)
