"""A project's Live Activities in the page's mode: the list (by status, type and user), one
activity — attributes, current content state, lifecycle, each device's token (redacted, as
the API gives it) and its last deliveries — and the forms that update and end it.

Each form carries an Idempotency-Key drawn with the page, so a form sent twice sends once. A
refusal is the API's own message beside the field it names: 409 ``activity_ended`` when the
activity ended meanwhile, 429 ``activity_update_rate`` for changes faster than once a second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.responses import Response

from controlplane.api.activities import ActivityDetail, ActivityOut, ActivitySent
from controlplane.api.pagination import Page
from controlplane.dashboard.forms import (
    idempotency_key,
    integer,
    json_object,
    new_idempotency_key,
    number,
    text,
    utc_moment,
)
from controlplane.dashboard.page import View, dashboard_page
from controlplane.dashboard.sent import read_sent, sent_query
from controlplane.errors import APIError, IdempotencyConflict, InvalidRequest
from controlplane.models import ActivityStatus
from controlplane.models.activities import OPEN_ACTIVITY_STATUSES

ACTIVITIES = "/v1/activities"
ACTIVITY = ACTIVITIES + "/{activity_id}"
PAGE_SIZE = "25"
FILTERS = ("status", "activity_type", "user_id")
NOTICES = {
    "updated": "Update accepted: it goes out with a newer timestamp than any before it.",
    "ended": "End accepted: the activity takes no more updates.",
    "in_progress": "This form was already sent and is still being processed: it was not sent "
    "again.",
}
# What a person types, kept when the page comes back with an error.
UPDATE_FIELDS = ("content_state", "alert_title", "alert_body", "stale_date", "relevance_score",
                 "priority")  # fmt: skip
END_FIELDS = ("content_state", "dismissal", "dismissal_at")


async def activities(view: View) -> Response:
    query = view.request.query_params
    filters = {name: (query.get(name) or "").strip() for name in FILTERS}
    error: APIError | None = None
    try:
        page = await view.gateway.get(
            Page[ActivityOut], ACTIVITIES, project_id=view.project_id, mode=view.mode,
            query={**filters, "limit": PAGE_SIZE, "starting_after": query.get("starting_after")},
        )  # fmt: skip
    except APIError as exc:  # a filter the API refuses, named
        error, page = exc, Page[ActivityOut](data=[], has_more=False)
    return view.render(
        "activities.html",
        status_code=error.status_code if error else 200,
        activities=page,
        filters=filters,
        statuses=[status.value for status in ActivityStatus],
        base_query=urlencode({name: value for name, value in filters.items() if value}),
        error=error,
    )


async def _activity_page(
    view: View,
    *,
    error: APIError | None = None,
    failed: str | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    detail = await view.gateway.get(
        ActivityDetail, ACTIVITY, params={"activity_id": view.param("activity_id")},
        project_id=view.project_id, mode=view.mode,
    )  # fmt: skip
    return view.render(
        "activity.html",
        status_code=status_code,
        activity=detail,
        is_open=detail.status in OPEN_ACTIVITY_STATUSES,
        sent=read_sent(view.request.query_params, NOTICES),
        error=error,
        failed=failed,
        values=values or {},
        new_idempotency_key=new_idempotency_key,
        now=datetime.now(UTC).isoformat(timespec="seconds"),
    )


async def activity(view: View) -> Response:
    return await _activity_page(view)


def _typed(form: FormData, names: tuple[str, ...]) -> dict[str, str]:
    return {name: text(form, name) or "" for name in names}


def _update_body(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if (content_state := json_object(form, "content_state")) is not None:
        body["content_state"] = content_state
    alert = {name: value for name in ("title", "body") if (value := text(form, f"alert_{name}"))}
    if alert:
        body["alert"] = alert
    if (stale_date := utc_moment(form, "stale_date")) is not None:
        body["stale_date"] = stale_date
    if (score := number(form, "relevance_score")) is not None:
        body["relevance_score"] = score
    if (priority := integer(form, "priority")) is not None:
        body["priority"] = priority
    return body


def _end_body(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if (content_state := json_object(form, "content_state")) is not None:
        body["content_state"] = content_state
    dismissal = text(form, "dismissal") or "default"
    if dismissal == "immediate":
        # The moment the form was drawn (in the past by now: "remove it at once"), so the
        # same form sent twice is the same request for its idempotency key.
        body["dismissal_date"] = text(form, "drawn_at") or datetime.now(UTC).isoformat()
    elif dismissal == "after":
        when = utc_moment(form, "dismissal_at")
        if when is None:
            raise InvalidRequest(
                "dismissal_date: choose when it leaves the Lock Screen (UTC), or another "
                "policy.", param="dismissal_date",
            )  # fmt: skip
        body["dismissal_date"] = when
    elif dismissal != "default":
        raise InvalidRequest("dismissal_date: choose a dismissal policy.", param="dismissal_date")
    return body


async def _change(view: View, event: str) -> Response:
    """Send the update or end form (``event``), then back to the activity with its notice."""
    form = await view.form()
    params = {"activity_id": view.param("activity_id")}
    url = view.frame.project_url(f"activities/{params['activity_id']}")
    try:
        body = _update_body(form) if event == "update" else _end_body(form)
        sent = await view.gateway.change(
            ActivitySent, "POST", f"{ACTIVITY}/{event}", params=params, body=body,
            project_id=view.project_id, mode=view.mode, idempotency_key=idempotency_key(form),
        )  # fmt: skip
    except APIError as error:
        if isinstance(error, IdempotencyConflict) and error.code == "idempotency_key_in_use":
            return view.redirect(f"{url}?notice=in_progress")  # the first of two is running
        fields = UPDATE_FIELDS if event == "update" else END_FIELDS
        return await _activity_page(
            view, error=error, failed=event, values=_typed(form, fields),
            status_code=error.status_code,
        )  # fmt: skip
    notice = "updated" if event == "update" else "ended"
    return view.redirect(f"{url}?" + sent_query(
        notice, push_id=sent.push_id, recipients=sent.recipients,
        warnings=[warning.code for warning in sent.warnings],
    ))  # fmt: skip


async def update_activity(view: View) -> Response:
    return await _change(view, "update")


async def end_activity(view: View) -> Response:
    return await _change(view, "end")


PREFIX = "/projects/{project_id}/{mode}/activities"
routes = [
    dashboard_page(PREFIX, activities),
    dashboard_page(PREFIX + "/{activity_id}", activity),
    dashboard_page(PREFIX + "/{activity_id}/update", update_activity, methods=("POST",)),
    dashboard_page(PREFIX + "/{activity_id}/end", end_activity, methods=("POST",)),
]
