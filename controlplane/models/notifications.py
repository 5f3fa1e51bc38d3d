"""The outbound message log: every email the product sent (or tried to), whatever the sender.

The body can hold a secret (an invitation link), so it is stored encrypted with the key ring;
recipient, subject and kind stay readable for support.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from controlplane.models.ids import new_notification_id


class Notification(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_notification_id)
    organization_id = fields.CharField(max_length=32, null=True, db_index=True)
    channel = fields.CharField(max_length=20, default="email")
    kind = fields.CharField(max_length=64)
    recipient = fields.CharField(max_length=320)
    subject = fields.CharField(max_length=300)
    body_encrypted = fields.TextField()
    sender = fields.CharField(max_length=64)
    status = fields.CharField(max_length=20)  # sent | failed
    error = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "notifications"
