"""``POST /v1/events`` and ``/v1/analytics/*``: apps report events, tenants read them back.

Ingestion is built for volume: the handler checks each event on its own
(``controlplane/analytics/events.py``), keeps the good ones and answers 200 with a reason for
each refused one, after appending the batch to the Redis buffer in one round trip — no
database row per event, no database transaction at all. Workers load the buffer in bulk
(``controlplane/analytics/loading.py``). Redis unreachable is a 503 and nothing of the batch
was taken, so a client sends the same batch again; events are deduplicated by id, which also
makes a retry of a batch that did get through harmless.

Publishable keys (in apps) and secret keys (servers) both report events (``analytics:write``);
reading needs ``analytics:read``, which only secret keys hold — every copy of an app holds
its publishable key. Everything is per project and mode, as the key says.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    TypeAdapter,
    ValidationError,
)
from redis.exceptions import RedisError
from starlette.responses import StreamingResponse
from tortoise.queryset import QuerySet

from controlplane.analytics import events as names
from controlplane.analytics import reading
from controlplane.analytics.buffer import BufferFull, EventBuffer
from controlplane.analytics.events import (
    EVENT_ID_PATTERN,
    MAX_EVENTS_PER_BATCH,
    NAME_PATTERN,
    PUSH_ID_PATTERN,
    TrackedEvent,
)
from controlplane.analytics.reading import EventFilter, GroupBy, Period, Window
from controlplane.api.bodies import item_refusal, validation_error
from controlplane.api.pagination import ListQuery, Page
from controlplane.api.routing import Auth, Call, Operation
from controlplane.errors import DependencyUnavailable, InvalidRequest, ServiceUnavailable
from controlplane.models import AnalyticsEvent, Granularity, KeyMode
from controlplane.payloads import WIDGET_KIND_PATTERN
from controlplane.validation import Moment

BUFFER_FULL_RETRY_SECONDS = 30
_ACCEPTED = TypeAdapter(list[TrackedEvent])


# --- ingestion --------------------------------------------------------------------------------


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[SkipValidation[TrackedEvent | dict[str, Any]]] = Field(
        min_length=1,
        max_length=MAX_EVENTS_PER_BATCH,
        description=f"1 to {MAX_EVENTS_PER_BATCH} events, each a JSON object checked on its "
        "own against `TrackedEvent`: an event that fails is refused (in `errors`) and the "
        "others are kept.",
    )


class RefusedEvent(BaseModel):
    index: int = Field(description="Its position in `events`, from 0.")
    id: str | None = Field(description="Its `id`, when it has a readable one.")
    code: str = Field(
        description="`parameter_invalid`, `parameter_missing` or `duplicate_event_id`."
    )
    param: str | None = Field(description="What is wrong with it: `events.3.timestamp`.")
    message: str


class EventBatchResult(BaseModel):
    object: Literal["event_batch"] = "event_batch"
    received: int = Field(description="Events in the batch.")
    accepted: int = Field(
        description="Events kept: each is counted once, however often it is sent."
    )
    rejected: int
    errors: list[RefusedEvent] = Field(description="One per refused event, in batch order.")


def _refusal(index: int, item: dict[str, Any], error: InvalidRequest) -> RefusedEvent:
    param, message = item_refusal(f"events.{index}", error)
    event_id = item.get("id")
    return RefusedEvent(
        index=index, id=event_id if isinstance(event_id, str) and len(event_id) <= 64 else None,
        code=error.code, param=param, message=message,
    )  # fmt: skip


async def ingest_events(call: Call) -> EventBatchResult:
    body = call.body_as(EventBatch)
    now = datetime.now(UTC)
    accepted: list[TrackedEvent] = []
    refused: list[RefusedEvent] = []
    first_of: dict[str, int] = {}
    for index, item in enumerate(body.events):
        if not isinstance(item, dict):  # the envelope's rule (the schema says so): whole batch
            raise InvalidRequest(
                f"events.{index}: each event is a JSON object.",
                code="parameter_invalid",
                param=f"events.{index}",
            )
        try:
            event = TrackedEvent.model_validate(item, strict=True, context={"now": now})
        except ValidationError as exc:
            refused.append(_refusal(index, item, validation_error(exc)))
            continue
        if event.id in first_of:
            param = f"events.{index}.id"
            refused.append(RefusedEvent(
                index=index, id=event.id, code="duplicate_event_id", param=param,
                message=f"{param}: the same id as events.{first_of[event.id]} of this batch "
                "(that one is kept)",
            ))  # fmt: skip
            continue
        first_of[event.id] = index
        accepted.append(event)
    if accepted:
        await _append(call, accepted, now)
    return EventBatchResult(
        received=len(body.events), accepted=len(accepted), rejected=len(refused), errors=refused
    )


async def _append(call: Call, accepted: list[TrackedEvent], now: datetime) -> None:
    project_id, mode = _project_and_mode(call)
    buffer: EventBuffer = call.request.app.state.event_buffer
    try:
        await buffer.append(project_id, mode, now, _ACCEPTED.dump_json(accepted, exclude_none=True))
    except BufferFull:
        raise ServiceUnavailable(
            "Analytics events are arriving faster than they can be loaded: none of this batch "
            "was accepted. Send the same batch again later.",
            code="analytics_buffer_full",
            headers={"Retry-After": str(BUFFER_FULL_RETRY_SECONDS)},
        ) from None
    except RedisError:
        raise DependencyUnavailable.redis(
            "Redis is unavailable: none of this batch was accepted. Send the same batch again "
            "shortly (events are counted once by id, however often they are sent)."
        ) from None


# --- summary ----------------------------------------------------------------------------------


class SummaryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    period: Period = Field(
        default=Period.WEEK,
        description="The window ending at `to` (default now), in whole buckets: 24h is the "
        "last 24 hours (by hour), 7d and 30d the last 7 or 30 days (UTC, by day, today "
        "included). Ignored when `from` is given.",
    )
    since: Moment | None = Field(
        default=None,
        alias="from",
        description="Start of a range of your own (rounded down to its hour, or its day for "
        "ranges over 72 hours or older than 35 days); must be before `to`.",
    )
    until: Moment | None = Field(default=None, alias="to", description="End; default now.")
    group_by: GroupBy = Field(
        default=GroupBy.DAY,
        description="How `groups` splits the events: by day (every day of the window, empty "
        "ones included) or by a dimension's value (the 100 largest).",
    )


class WidgetFigures(BaseModel):
    widget: str
    impressions: int
    clicks: int
    click_through_rate: float | None = Field(description="clicks ÷ impressions; null without.")


class PushFigures(BaseModel):
    attempted: int = Field(description="Deliveries created in the window that were tried.")
    delivered: int
    delivery_success_rate: float | None = Field(description="delivered ÷ attempted.")
    opened: int = Field(description="push.opened events in the window.")
    open_rate: float | None = Field(description="opened ÷ delivered; null when none delivered.")


class LiveActivityFigures(BaseModel):
    active: int = Field(description="Live Activities starting, active or stale now.")
    started: int = Field(description="activity.start events in the window.")
    updated: int
    ended: int


class SummaryGroup(BaseModel):
    key: str | None = Field(
        description="The day (YYYY-MM-DD) or the dimension's value; null for events that do "
        "not carry it (no country, say)."
    )
    events: int
    counts: dict[str, int] = Field(description="Events by name.")


class AnalyticsSummary(BaseModel):
    object: Literal["analytics_summary"] = "analytics_summary"
    mode: KeyMode
    starts_at: datetime = Field(description="The first bucket's start.")
    ends_at: datetime
    granularity: Granularity = Field(description="The buckets counted: hours or days (UTC).")
    events: int
    counts: dict[str, int] = Field(description="Events by name over the window.")
    widget_impressions: int
    widget_clicks: int
    click_through_rate: float | None = Field(description="Clicks ÷ impressions, all widgets.")
    widgets: list[WidgetFigures] = Field(description="Per widget, most impressions first.")
    live_activities: LiveActivityFigures
    pushes: PushFigures
    errors: int
    error_rate: float | None = Field(description="error events ÷ all events.")
    group_by: GroupBy
    groups: list[SummaryGroup]
    groups_truncated: bool = Field(description="More values than the 100 groups listed.")


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _widget_figures(widget: str, counts: dict[str, int]) -> WidgetFigures:
    shown, clicked = counts.get(names.WIDGET_IMPRESSION, 0), counts.get(names.WIDGET_CLICK, 0)
    return WidgetFigures(
        widget=widget, impressions=shown, clicks=clicked, click_through_rate=_rate(clicked, shown)
    )


def _project_and_mode(call: Call) -> tuple[str, KeyMode]:
    project, mode = call.tenant.project, call.tenant.mode
    assert project is not None
    assert mode is not None
    return project.id, mode


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise InvalidRequest("from: must be before to.", code="parameter_invalid", param="from")


async def retrieve_analytics_summary(call: Call) -> AnalyticsSummary:
    params = call.query_as(SummaryQuery)
    _check_range(params.since, params.until)
    project_id, mode = _project_and_mode(call)
    window = Window.of(datetime.now(UTC), params.period, params.since, params.until)
    if window.start >= window.end:  # one bound given, the other defaulted past it
        named = "from" if params.since is not None else "to"
        raise InvalidRequest(
            f"{named}: the window would end before it starts (`to` defaults to now, and without "
            "`from` the period ends at `to`, within the last days kept).",
            code="parameter_invalid", param=named,
        )  # fmt: skip
    found = await reading.summary(project_id, mode, window, params.group_by)
    impressions, clicks = found.count(names.WIDGET_IMPRESSION), found.count(names.WIDGET_CLICK)
    widgets = [_widget_figures(widget, counts) for widget, counts in found.widgets.items()]
    widgets.sort(key=lambda figures: (-figures.impressions, -figures.clicks, figures.widget))
    delivered = found.deliveries.get("delivered", 0)
    attempted = sum(found.deliveries.values())
    total = sum(found.counts.values())
    return AnalyticsSummary(
        mode=mode, starts_at=window.start, ends_at=window.end, granularity=window.granularity,
        events=total, counts=found.counts, widget_impressions=impressions, widget_clicks=clicks,
        click_through_rate=_rate(clicks, impressions), widgets=widgets[: reading.MAX_GROUPS],
        live_activities=LiveActivityFigures(
            active=found.active_activities, started=found.count(names.ACTIVITY_START),
            updated=found.count(names.ACTIVITY_UPDATE), ended=found.count(names.ACTIVITY_END),
        ),
        pushes=PushFigures(
            attempted=attempted, delivered=delivered,
            delivery_success_rate=_rate(delivered, attempted),
            opened=found.count(names.PUSH_OPENED),
            open_rate=_rate(found.count(names.PUSH_OPENED), delivered),
        ),
        errors=found.count(names.ERROR), error_rate=_rate(found.count(names.ERROR), total),
        group_by=params.group_by, groups_truncated=found.groups_truncated,
        groups=[SummaryGroup(key=group.key, events=group.events, counts=group.counts)
                for group in found.groups],
    )  # fmt: skip


# --- raw events -------------------------------------------------------------------------------


class EventFilterQuery(BaseModel):
    """The filters a list and an export share."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="One event name.")
    device_id: str | None = Field(default=None, min_length=1, max_length=128)
    user_id: str | None = Field(default=None, min_length=1, max_length=200)
    widget: str | None = Field(default=None, pattern=WIDGET_KIND_PATTERN)
    push_id: str | None = Field(default=None, pattern=PUSH_ID_PATTERN)
    platform: Literal["ios", "android"] | None = None
    since: Moment | None = Field(
        default=None, alias="from", description="Events whose timestamp is at or after this."
    )
    until: Moment | None = Field(default=None, alias="to", description="… and before this.")

    def filter(self) -> EventFilter:
        return EventFilter(
            name=self.name, device_id=self.device_id, user_id=self.user_id, widget=self.widget,
            push_id=self.push_id, platform=self.platform, since=self.since, until=self.until,
        )  # fmt: skip


class EventListQuery(EventFilterQuery, ListQuery):
    limit: int = Field(default=20, ge=1, le=500, description="Page size, 1 to 500.")
    starting_after: str | None = Field(
        default=None,
        pattern=EVENT_ID_PATTERN,
        description="The `id` of the last event of the previous page; one not in this list "
        "is a 400 `resource_missing`.",
    )


class RecordedEvent(BaseModel):
    """An event as loaded (the fields as it was sent, and when the API received it)."""

    object: Literal["event"] = "event"
    id: str
    name: str
    timestamp: datetime
    received_at: datetime
    device_id: str | None
    user_id: str | None
    platform: str | None
    app_version: str | None
    os_version: str | None
    device_model: str | None
    locale: str | None
    country: str | None
    widget: str | None
    action: str | None
    activity_id: str | None
    push_id: str | None
    error_code: str | None
    error_message: str | None
    properties: dict[str, Any] | None

    @classmethod
    def of(cls, row: AnalyticsEvent) -> RecordedEvent:
        return cls(
            id=row.client_id, name=row.name, timestamp=row.occurred_at,
            received_at=row.received_at, device_id=row.device_id, user_id=row.user_id,
            platform=row.platform, app_version=row.app_version, os_version=row.os_version,
            device_model=row.device_model, locale=row.locale, country=row.country,
            widget=row.widget, action=row.action, activity_id=row.activity_id,
            push_id=row.push_id, error_code=row.error_code, error_message=row.error_message,
            properties=row.properties,
        )  # fmt: skip


async def list_analytics_events(call: Call) -> Page[RecordedEvent]:
    params = call.query_as(EventListQuery)
    _check_range(params.since, params.until)
    events = params.filter().apply(call.tenant.query(AnalyticsEvent))
    after = None
    if params.starting_after is not None:
        after = await call.tenant.query(AnalyticsEvent).get_or_none(client_id=params.starting_after)
        if after is None:
            raise InvalidRequest(
                f"No such event to start after: '{params.starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
    rows, more = await reading.page(events, params.limit, after)
    return Page[RecordedEvent](data=[RecordedEvent.of(row) for row in rows], has_more=more)


CSV_COLUMNS = ("id", "name", "timestamp", "received_at", "device_id", "user_id", "platform",
               "app_version", "os_version", "device_model", "locale", "country", "widget",
               "action", "activity_id", "push_id", "error_code", "error_message",
               "properties")  # fmt: skip
# A cell a spreadsheet would run as a formula is written with a leading apostrophe (OWASP's
# advice on CSV injection): apps, and so anyone holding a publishable key, choose these texts.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _taken(out: io.StringIO) -> str:
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


async def _csv_lines(events: QuerySet[AnalyticsEvent]) -> AsyncIterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield _taken(out)
    async for rows in reading.oldest_first(events):
        for row in rows:
            record = RecordedEvent.of(row)
            writer.writerow([_cell(getattr(record, column)) for column in CSV_COLUMNS])
        yield _taken(out)


async def export_analytics_events(call: Call) -> StreamingResponse:
    params = call.query_as(EventFilterQuery)
    _check_range(params.since, params.until)
    project_id, mode = _project_and_mode(call)
    events = params.filter().apply(call.tenant.query(AnalyticsEvent))
    filename = f"events-{project_id}-{mode.value}.csv"
    return StreamingResponse(
        _csv_lines(events),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


KEY = Auth.API_KEY
operations = [
    Operation("POST", "/v1/events", ingest_events, "Report a batch of analytics events",
              "Analytics", auth=KEY, scope="analytics:write", body=EventBatch,
              response=EventBatchResult, transactional=False,
              description=f"Up to {MAX_EVENTS_PER_BATCH} events (and at most "
              "`BRIK_MAX_BODY_BYTES`, 1 MB by default). Each event is checked on its own: "
              "the answer is 200 with the events kept and, in `errors`, a reason for each "
              "one refused (its index and `param`); the others are kept. Events are buffered "
              "and loaded within seconds; an event `id` sent again (a retried batch) is "
              "counted once. 503 when Redis is unavailable or the buffer is full "
              "(`analytics_buffer_full`, with `Retry-After`): nothing of the batch was kept, "
              "send it again. Publishable keys may (`analytics:write`). See "
              "docs/analytics.md for each event name and its fields."),
    Operation("GET", "/v1/analytics/summary", retrieve_analytics_summary,
              "Analytics over a window: widget clicks and impressions, Live Activities, push "
              "opens, errors", "Analytics", auth=KEY, scope="analytics:read",
              query=SummaryQuery, response=AnalyticsSummary,
              description="Counted from hourly and daily rollups of the loaded events (a few "
              "seconds behind ingestion), in whole buckets. Push delivery figures come from "
              "the deliveries created in the window; active Live Activities are counted now."),
    Operation("GET", "/v1/analytics/events", list_analytics_events,
              "List analytics events, newest first", "Analytics", auth=KEY,
              scope="analytics:read", query=EventListQuery, response=Page[RecordedEvent],
              description="Raw events, kept for the plan's analytics retention. Filters "
              "combine (AND); `from`/`to` bound the event's timestamp."),
    Operation("GET", "/v1/analytics/events.csv", export_analytics_events,
              "Export analytics events as CSV, oldest first", "Analytics", auth=KEY,
              scope="analytics:read", query=EventFilterQuery, response_media_type="text/csv",
              description="Streamed, whatever the range: one header row, then one row per "
              "event (`properties` as JSON). The same filters as the list. A text a "
              "spreadsheet would run as a formula (starting with =, +, -, @) is written "
              "with a leading apostrophe."),
]  # fmt: skip
