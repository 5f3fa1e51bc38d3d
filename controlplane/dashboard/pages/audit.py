"""An organization's audit log: its events, newest first, filtered by actor, action and dates;
each event's page with everything recorded about it.

The filters are a plain GET form over ``GET /v1/organizations/{organization_id}/audit_events``:
an actor by email (or an id, as the detail page links it), an action or every action on one
noun (``api_key.*``), and a date range in UTC, both days included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from starlette.responses import Response

from controlplane.api.audit_events import AuditEvent
from controlplane.api.pagination import Page
from controlplane.audit import AUDITED_ACTIONS
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError, InvalidRequest
from controlplane.models.ids import is_well_formed_id

EVENTS = "/v1/organizations/{organization_id}/audit_events"
EVENT = EVENTS + "/{audit_event_id}"
PAGE_SIZE = "25"
FILTERS = ("actor", "action", "from", "to")
# The operation's query parameter → the filter field it comes from (to show errors beside it).
FIELD_OF_PARAM = {"actor_id": "actor", "actor_email": "actor", "action": "action",
                  "created_gte": "from", "created_lt": "to", "starting_after": None}  # fmt: skip


@dataclass(frozen=True)
class ActionGroup:
    noun: str
    actions: list[str]


def action_groups() -> list[ActionGroup]:
    """Every audited action, grouped by what it is about (``api_key``, ``member`` …)."""
    groups: dict[str, list[str]] = {}
    for action in AUDITED_ACTIONS:
        groups.setdefault(action.split(".", 1)[0], []).append(action)
    return [ActionGroup(noun, actions) for noun, actions in groups.items()]


# The days the operation's moments reach (controlplane/validation.py: years 1970 to 2999).
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2999, 12, 31)


def _day(value: str, field: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is None or not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidRequest(
            f"{field}: a date from {FIRST_DAY} to {LAST_DAY}, such as 2030-01-31.", param=field
        )
    return day


def api_query(filters: dict[str, str]) -> dict[str, str]:
    """The filter form's values as the operation's query parameters."""
    query: dict[str, str] = {}
    if actor := filters["actor"]:
        query["actor_id" if is_well_formed_id(actor) else "actor_email"] = actor
    if filters["action"]:
        query["action"] = filters["action"]
    if filters["from"]:
        query["created_gte"] = f"{_day(filters['from'], 'from').isoformat()}T00:00:00Z"
    if filters["to"]:
        day_after = _day(filters["to"], "to") + timedelta(days=1)
        query["created_lt"] = f"{day_after.isoformat()}T00:00:00Z"
    return query


async def audit_log(view: View) -> Response:
    params = view.request.query_params
    filters = {name: (params.get(name) or "").strip() for name in FILTERS}
    events: Page[AuditEvent] = Page[AuditEvent](data=[], has_more=False)
    error: APIError | None = None
    try:
        query = api_query(filters)
        events = await view.gateway.get(
            Page[AuditEvent],
            EVENTS,
            params={"organization_id": view.organization_id},
            query={
                **query,
                "limit": PAGE_SIZE,
                "starting_after": params.get("starting_after", ""),
            },
        )
    except InvalidRequest as exc:  # a filter the operation refuses: shown beside it
        error = exc
    return view.render(
        "audit_log.html",
        status_code=error.status_code if error else 200,
        events=events,
        filters=filters,
        filter_query=urlencode({name: value for name, value in filters.items() if value}),
        paged=bool(params.get("starting_after")),
        action_groups=action_groups(),
        error=error,
        error_field=FIELD_OF_PARAM.get(error.param or "", error.param) if error else None,
    )


async def audit_event(view: View) -> Response:
    event = await view.gateway.get(
        AuditEvent,
        EVENT,
        params={
            "organization_id": view.organization_id,
            "audit_event_id": view.param("audit_event_id"),
        },
    )
    return view.render(
        "audit_event.html", event=event, description=AUDITED_ACTIONS.get(event.action, "")
    )


routes = [
    dashboard_page("/organizations/{organization_id}/audit", audit_log),
    dashboard_page("/organizations/{organization_id}/audit/{audit_event_id}", audit_event),
]
