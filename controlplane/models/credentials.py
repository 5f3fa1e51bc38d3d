"""Provider credentials of a project: its APNs auth key and its FCM service account.

One row per (project, provider). The secret part is stored only encrypted with the key ring
(``secret_encrypted``); ``details`` holds what may be shown (key id, team id, topic,
environment; Firebase project, client email) and ``fingerprint`` identifies the secret
without revealing it. Uploading again replaces the secret and bumps ``version``: workers key
their warm connections by version, so sends in flight on the old one finish on it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from controlplane.models.ids import new_credential_id
from controlplane.models.tenancy import Project


class ProviderName(StrEnum):
    APNS = "apns"
    FCM = "fcm"


class ProviderCredential(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_credential_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="credentials", on_delete=fields.CASCADE
    )
    provider = fields.CharEnumField(ProviderName, max_length=10)
    secret_encrypted = fields.TextField()
    details: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    fingerprint = fields.CharField(max_length=64)
    version = fields.IntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "provider_credentials"
        unique_together = (("project", "provider"),)
