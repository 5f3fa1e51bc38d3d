"""The audit log: who did what to what, from where, when. Append-only for the application."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from controlplane.models.ids import new_audit_event_id


class AppendOnly(Exception):
    """Raised when code tries to change or delete an audit event."""


class AuditEvent(Model):
    """One sensitive action.

    ``organization_id`` and the actor/target ids are plain columns, not foreign keys: the
    record of what happened must outlive the organization, user or key it mentions.
    """

    id = fields.CharField(max_length=32, primary_key=True, default=new_audit_event_id)
    organization_id = fields.CharField(max_length=32, null=True, db_index=True)
    actor_type = fields.CharField(max_length=20)  # user | access_token | api_key | system
    actor_id = fields.CharField(max_length=32, null=True)
    actor_email = fields.CharField(max_length=320, null=True)
    action = fields.CharField(max_length=64, db_index=True)
    target_type = fields.CharField(max_length=32, null=True)
    target_id = fields.CharField(max_length=64, null=True)
    ip = fields.CharField(max_length=64, default="")
    user_agent = fields.CharField(max_length=400, default="")
    details: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_events"

    async def save(self, *args: Any, **kwargs: Any) -> None:
        if self._saved_in_db:
            raise AppendOnly("audit events cannot be changed")
        await super().save(*args, **kwargs)

    async def delete(self, using_db: BaseDBAsyncClient | None = None) -> None:
        raise AppendOnly("audit events cannot be deleted")
