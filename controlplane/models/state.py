"""State: JSON values by key, per project and mode, and the bytes each organization stores.

An entry keeps its value as the compact JSON text it was written as (``value``), so what is
stored, what is counted against the plan (``size_bytes``: key plus value, in UTF-8) and what
is read back are the same bytes on PostgreSQL and SQLite alike. ``version`` counts the writes
of one entry; together with the entry's random id it makes the ETag, so an entry deleted and
written again never repeats an ETag a client may still hold.

:class:`StateUsage` is the one row per organization and mode that every write of that
organization's state updates with a conditional UPDATE, in the write's own transaction (see
``controlplane/state.py``): it is the plan's state limit, enforced, and the figure
``GET /v1/usage`` shows.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import new_state_entry_id
from controlplane.models.tenancy import Organization, Project


class StateEntry(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_state_entry_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="state_entries", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=10)
    key = fields.CharField(max_length=256)
    value = fields.TextField()
    public = fields.BooleanField(default=False)
    version = fields.BigIntField(default=1)
    size_bytes = fields.IntField()
    expires_at = fields.DatetimeField(null=True, db_index=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "state_entries"
        unique_together = (("project", "mode", "key"),)


class StateUsage(Model):
    """Bytes of state one organization stores in one mode (entries not yet purged included)."""

    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="state_usage", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=10)
    bytes = fields.BigIntField(default=0)

    class Meta:
        table = "state_usage"
        unique_together = (("organization", "mode"),)
