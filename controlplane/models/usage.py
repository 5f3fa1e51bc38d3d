"""Usage per organization: monthly push counters (the rows quota reservations lock), a per-day
series of every metric, and the quota warnings already sent."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from controlplane.models.api_keys import KeyMode
from controlplane.models.tenancy import Organization


class UsageMetric(StrEnum):
    PUSHES = "pushes"
    API_REQUESTS = "api_requests"
    STATE_BYTES = "state_bytes"


class UsagePeriod(Model):
    """Pushes accepted for one organization, calendar month (UTC) and mode.

    ``POST /v1/pushes`` reserves its recipients here with one conditional UPDATE, so
    concurrent sends can never take the count past the quota.
    """

    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="usage_periods", on_delete=fields.CASCADE
    )
    period_start = fields.DateField()
    mode = fields.CharEnumField(KeyMode, max_length=10)
    pushes = fields.BigIntField(default=0)
    overage_reported = fields.BigIntField(default=0)  # pushes past the quota sent to billing

    class Meta:
        table = "usage_periods"
        unique_together = (("organization", "period_start", "mode"),)


class UsageDay(Model):
    """One metric's total for one organization, UTC day and mode (the series in the API)."""

    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="usage_days", on_delete=fields.CASCADE
    )
    day = fields.DateField()
    mode = fields.CharEnumField(KeyMode, max_length=10)
    metric = fields.CharEnumField(UsageMetric, max_length=20)
    value = fields.BigIntField(default=0)

    class Meta:
        table = "usage_days"
        unique_together = (("organization", "day", "mode", "metric"),)


class UsageAlert(Model):
    """A quota warning (80 or 100 percent) already sent for a period: each goes out once."""

    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "brik.Organization", related_name="usage_alerts", on_delete=fields.CASCADE
    )
    period_start = fields.DateField()
    mode = fields.CharEnumField(KeyMode, max_length=10)
    metric = fields.CharEnumField(UsageMetric, max_length=20)
    percent = fields.IntField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "usage_alerts"
        unique_together = (("organization", "period_start", "mode", "metric", "percent"),)
