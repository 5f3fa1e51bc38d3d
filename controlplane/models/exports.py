"""Project exports (``exp_…``): an archive of a project's data in one mode, built by a worker.

An export is asked for through the API (``queued``), taken by a worker under a lease
(``running``: ``lease_token`` / ``lease_until``, renewed as it writes), and ends ``succeeded``
with its archive on disk (``file_name`` in ``BRIK_EXPORT_DIR``) until ``expires_at``, or
``failed`` after :data:`controlplane.exports.jobs.MAX_ATTEMPTS`. A worker killed mid-export
leaves its lease to run out; the sweep (``workers/tasks/exports.py``) hands it to a worker
again. Once expired the archive is deleted and the row says ``expired``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from controlplane.models.api_keys import KeyMode
from controlplane.models.ids import new_export_id
from controlplane.models.tenancy import Project


class ExportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class Export(Model):
    id = fields.CharField(max_length=32, primary_key=True, default=new_export_id)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="exports", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=4)
    status = fields.CharEnumField(ExportStatus, max_length=10, default=ExportStatus.QUEUED)
    attempts = fields.IntField(default=0)
    lease_token = fields.CharField(max_length=32, null=True)
    lease_until = fields.DatetimeField(null=True)
    file_name = fields.CharField(max_length=100, null=True)
    size_bytes = fields.BigIntField(null=True)
    sha256 = fields.CharField(max_length=64, null=True)
    counts: fields.Field[dict[str, Any]] = fields.JSONField(default=dict)
    error = fields.CharField(max_length=500, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)

    class Meta:
        table = "exports"
        indexes = (("status", "lease_until"),)
