"""Project API keys, stored only as a peppered HMAC (see ``controlplane.auth.keys``)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from controlplane.models.ids import new_key_id
from controlplane.models.tenancy import Project


class KeyKind(StrEnum):
    PUBLISHABLE = "publishable"
    SECRET = "secret"


class KeyMode(StrEnum):
    TEST = "test"
    LIVE = "live"


class ApiKey(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_key_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="api_keys", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200, default="")
    kind = fields.CharEnumField(KeyKind, max_length=20)
    mode = fields.CharEnumField(KeyMode, max_length=10)
    scopes: fields.Field[list[str]] = fields.JSONField(default=list)
    key_hash = fields.CharField(max_length=64, unique=True)
    pepper_id = fields.CharField(max_length=16, null=True)  # which secret key hashed it
    display_prefix = fields.CharField(max_length=24)
    last_four = fields.CharField(max_length=4)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "api_keys"
