"""What the workers report about themselves."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class WorkerHeartbeat(Model):
    """One row per worker process, refreshed by the ``heartbeat`` job.

    The row count stays bounded by the number of workers, so the unauthenticated pipeline
    probe (``POST /healthz/pipeline``) cannot grow the table.
    """

    worker_id = fields.CharField(max_length=100, primary_key=True)
    last_probe_id = fields.CharField(max_length=64)
    beats = fields.BigIntField(default=0)
    last_seen_at = fields.DatetimeField()

    class Meta:
        table = "worker_heartbeats"
