"""A project's widgets in the page's mode: the widget data stored (the ``widget:{kind}`` state
entries) and a form that reloads one kind of widget on devices, users or tags, with new data
or without — ``POST /v1/widgets/{kind}/reload`` (``controlplane/api/widgets.py``), with an
Idempotency-Key drawn with the form, so a form sent twice reloads once.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.responses import Response

from controlplane import state
from controlplane.api.pagination import Page
from controlplane.api.state import StateEntry
from controlplane.api.widgets import WidgetReloaded
from controlplane.dashboard.forms import (
    idempotency_key,
    json_object,
    lines,
    new_idempotency_key,
    text,
)
from controlplane.dashboard.page import View, dashboard_page
from controlplane.dashboard.pages.state import PREVIEW_CHARACTERS, entry_path
from controlplane.dashboard.sent import read_sent, sent_query
from controlplane.errors import APIError, IdempotencyConflict

RELOAD = "/v1/widgets/{kind}/reload"
TARGETS = ("device_ids", "user_ids", "tags")
NOTICES = {
    "reloaded": "Reload accepted.",
    "in_progress": "This form was already sent and is still being processed: it was not sent "
    "again.",
}


async def _page(
    view: View,
    *,
    error: APIError | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    stored = await view.gateway.get(
        Page[StateEntry], "/v1/state", project_id=view.project_id, mode=view.mode,
        query={"prefix": state.WIDGET_PREFIX, "limit": "100"},
    )  # fmt: skip
    return view.render(
        "widgets.html",
        status_code=status_code,
        widgets=[(entry.key.removeprefix(state.WIDGET_PREFIX), entry) for entry in stored.data],
        more=stored.has_more,
        error=error,
        values=values or {"kind": view.request.query_params.get("kind", "")},
        sent=read_sent(view.request.query_params, NOTICES),
        entry_path=entry_path,
        preview_characters=PREVIEW_CHARACTERS,
        new_idempotency_key=new_idempotency_key,
    )


def _reload_body(form: FormData) -> dict[str, Any]:
    body: dict[str, Any] = {"to": {name: found for name in TARGETS if (found := lines(form, name))}}
    if (data := json_object(form, "data")) is not None:
        body["data"] = data
    return body


async def widgets(view: View) -> Response:
    """The widgets; a POST reloads the kind the form names."""
    if view.request.method == "GET":
        return await _page(view)
    form = await view.form()
    here = view.frame.project_url("widgets")
    try:
        reloaded = await view.gateway.change(
            WidgetReloaded, "POST", RELOAD, params={"kind": text(form, "kind") or ""},
            body=_reload_body(form), project_id=view.project_id, mode=view.mode,
            idempotency_key=idempotency_key(form),
        )  # fmt: skip
    except APIError as error:
        if isinstance(error, IdempotencyConflict) and error.code == "idempotency_key_in_use":
            return view.redirect(f"{here}?notice=in_progress")
        values = {name: text(form, name) or "" for name in ("kind", *TARGETS, "data")}
        return await _page(view, error=error, values=values, status_code=error.status_code)
    return view.redirect(f"{here}?" + sent_query(
        "reloaded", push_id=reloaded.id, recipients=reloaded.recipients,
        warnings=[warning.code for warning in reloaded.warnings],
    ))  # fmt: skip


routes = [
    dashboard_page("/projects/{project_id}/{mode}/widgets", widgets, methods=("GET", "POST")),
]
