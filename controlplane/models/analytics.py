"""Analytics: the events apps report, as loaded, and the per-hour and per-day counts of them.

Events never reach these tables on the request path: ``POST /v1/events`` appends its batch to a
Redis stream and a worker loads it in bulk (``controlplane/analytics/``). :class:`AnalyticsEvent`
is one event as the app sent it, unique per project, mode and the app's own event id
(``client_id``): a batch loaded twice — a retried request, a redelivered stream entry — inserts
nothing the second time, and only what a load inserted is counted. Raw events are kept for the
organization's plan's retention, then purged.

:class:`AnalyticsRollup` is a count of events per bucket (an hour, or a day, in UTC), event name
and one *dimension* — everything (``all``), or by widget, platform, OS version, device model,
country or app version — so a summary over 30 days reads a few hundred rows, not millions of
events. Each event adds one to the ``all`` row of its name and to one row per dimension it has a
value for (an event without a country counts under the country ``""``), in its hour and its day.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from controlplane.models.api_keys import KeyMode
from controlplane.models.tenancy import Project


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


class Dimension(StrEnum):
    """What a rollup row counts by, besides the event name."""

    ALL = "all"  # value ""
    WIDGET = "widget"
    PLATFORM = "platform"
    OS_VERSION = "os_version"
    DEVICE_MODEL = "device_model"
    COUNTRY = "country"
    APP_VERSION = "app_version"


class AnalyticsEvent(Model):
    """One event an app reported (see ``docs/analytics.md`` for each field)."""

    id = fields.BigIntField(primary_key=True)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="analytics_events", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=10)
    client_id = fields.CharField(max_length=64)  # the app's event id: `id` in the API
    name = fields.CharField(max_length=80)
    occurred_at = fields.DatetimeField()  # the event's timestamp, as the app sent it
    received_at = fields.DatetimeField()  # when the API accepted its batch
    device_id = fields.CharField(max_length=128, null=True)
    user_id = fields.CharField(max_length=200, null=True)
    platform = fields.CharField(max_length=10, null=True)
    app_version = fields.CharField(max_length=32, null=True)
    os_version = fields.CharField(max_length=32, null=True)
    device_model = fields.CharField(max_length=64, null=True)
    locale = fields.CharField(max_length=35, null=True)
    country = fields.CharField(max_length=2, null=True)
    widget = fields.CharField(max_length=128, null=True)
    action = fields.CharField(max_length=128, null=True)
    activity_id = fields.CharField(max_length=64, null=True)
    push_id = fields.CharField(max_length=32, null=True)
    error_code = fields.CharField(max_length=128, null=True)
    error_message = fields.TextField(null=True)
    properties: fields.Field[dict[str, Any] | None] = fields.JSONField(null=True)

    class Meta:
        table = "analytics_events"
        unique_together = (("project", "mode", "client_id"),)
        # Listing, CSV export and the retention purge all walk a project's events by time.
        indexes = (("project_id", "mode", "occurred_at"),)


class AnalyticsRollup(Model):
    """Events of one name in one bucket, counted by one dimension's value."""

    id = fields.BigIntField(primary_key=True)
    project: fields.ForeignKeyRelation[Project] = fields.ForeignKeyField(
        "brik.Project", related_name="analytics_rollups", on_delete=fields.CASCADE
    )
    mode = fields.CharEnumField(KeyMode, max_length=10)
    granularity = fields.CharEnumField(Granularity, max_length=4)
    bucket = fields.DatetimeField()  # the hour's or the day's first moment, UTC
    name = fields.CharField(max_length=80)
    dimension = fields.CharEnumField(Dimension, max_length=16)
    value = fields.CharField(max_length=128)
    count = fields.BigIntField(default=0)

    class Meta:
        table = "analytics_rollups"
        unique_together = (
            ("project", "mode", "granularity", "bucket", "name", "dimension", "value"),
        )
        indexes = (("granularity", "bucket"),)  # the retention purge
