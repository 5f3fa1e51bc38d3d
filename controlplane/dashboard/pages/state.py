"""A project's state in the page's mode: keys by prefix with their values, public flag, expiry
and size, what the organization stores against its plan, and setting, replacing and deleting
a key — each through ``/v1/state`` (``controlplane/api/state.py``).

Keys under a reserved prefix are Brik's to write: ``widget:{kind}`` (a widget reload writes it)
and ``activity:{id}`` (an activity's content state) are shown read-only, with where to change
them. A key is one path segment here as in the API (``/state/{key}``): its characters
(``A-Z a-z 0-9 . _ : -``) need no escaping, and the templates escape them anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData
from starlette.responses import Response

from controlplane import state
from controlplane.api.pagination import Page
from controlplane.api.state import StateDeleted, StateEntry, StateEntryWritten
from controlplane.api.usage import Meter, Usage
from controlplane.dashboard.forms import (
    checked,
    idempotency_key,
    integer,
    json_object,
    new_idempotency_key,
    text,
)
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError, IdempotencyConflict, InvalidRequest, PermissionDenied

STATE = "/v1/state"
ENTRY = STATE + "/{key}"
USAGE = "/v1/organizations/{organization_id}/usage"
PAGE_SIZE = "50"
PREVIEW_CHARACTERS = 600
NOTICES = {
    "created": "Key created.",
    "saved": "Saved: value, visibility and expiry replaced.",
    "deleted": "Key deleted: its bytes are given back to the plan.",
    "in_progress": "This form was already sent and is still being processed: it was not sent "
    "again.",
}
WRITE_FIELDS = ("key", "value", "ttl_seconds")


def entry_path(key: str) -> str:
    """The entry's page, relative to the project and mode (``frame.project_url``)."""
    return f"state/{quote(key, safe='')}"


def read_only_reason(key: str) -> str | None:
    """Why the dashboard shows ``key`` read-only (a reserved prefix), or None."""
    prefix = state.reserved_prefix(key, writing=True)
    return None if prefix is None else state.RESERVED_PREFIXES[prefix]


def expires_in(moment: datetime | None) -> str:
    """How long until an entry expires, roughly: "in 3 h 12 min"; "never" without a TTL."""
    if moment is None:
        return "never"
    seconds = max(0, int((moment - datetime.now(UTC)).total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"in {days} d {hours} h"
    if hours:
        return f"in {hours} h {minutes} min"
    return f"in {minutes} min {seconds} s" if minutes else f"in {seconds} s"


async def _storage(view: View) -> tuple[Meter | None, Usage | None]:
    """The organization's stored state bytes in this mode, against the plan's limit."""
    try:  # the organization's meters: every role may read them
        usage = await view.gateway.get(
            Usage, USAGE, params={"organization_id": view.organization_id}
        )
    except PermissionDenied:
        return None, None
    meters = usage.live if view.mode.value == "live" else usage.test
    return meters.state_bytes, usage


async def _list_page(
    view: View,
    *,
    error: APIError | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    query = view.request.query_params
    prefix = (query.get("prefix") or "").strip()
    list_error: APIError | None = None
    try:
        entries = await view.gateway.get(
            Page[StateEntry], STATE, project_id=view.project_id, mode=view.mode,
            query={"prefix": prefix, "limit": PAGE_SIZE,
                   "starting_after": query.get("starting_after")},
        )  # fmt: skip
    except APIError as exc:  # a prefix the API refuses, named
        list_error, entries = exc, Page[StateEntry](data=[], has_more=False)
        status_code = exc.status_code
    meter, usage = await _storage(view)
    return view.render(
        "state.html",
        status_code=status_code,
        entries=entries,
        prefix=prefix,
        base_query=urlencode({"prefix": prefix} if prefix else {}),
        list_error=list_error,
        error=error,
        values=values or {"public": False},
        meter=meter,
        usage=usage,
        page_bytes=sum(entry.size_bytes for entry in entries.data),
        notice=NOTICES.get(query.get("notice", "")),
        **_helpers(),
    )


def _helpers() -> dict[str, Any]:
    return {
        "entry_path": entry_path,
        "read_only_reason": read_only_reason,
        "expires_in": expires_in,
        "new_idempotency_key": new_idempotency_key,
        "preview_characters": PREVIEW_CHARACTERS,
    }


def _typed(form: FormData) -> dict[str, Any]:
    return {**{name: text(form, name) or "" for name in WRITE_FIELDS},
            "public": checked(form, "public")}  # fmt: skip


async def _write(view: View, key: str, form: FormData) -> StateEntryWritten:
    """``PUT /v1/state/{key}`` with the form's value, visibility and TTL."""
    if text(form, "value") is None:
        raise InvalidRequest(
            'value: write a JSON value — an object, a number, "a quoted string", null …',
            param="value",
        )
    body: dict[str, Any] = {"value": json_object(form, "value"), "public": checked(form, "public")}
    if (ttl := integer(form, "ttl_seconds")) is not None:
        body["ttl_seconds"] = ttl
    return await view.gateway.change(
        StateEntryWritten, "PUT", ENTRY, params={"key": key}, body=body,
        project_id=view.project_id, mode=view.mode, idempotency_key=idempotency_key(form),
    )  # fmt: skip


def _in_progress(error: APIError) -> bool:
    """The first of a form sent twice is still running (the second sent nothing)."""
    return isinstance(error, IdempotencyConflict) and error.code == "idempotency_key_in_use"


async def state_list(view: View) -> Response:
    """The keys; a POST sets one (new or not) from the form at the bottom."""
    if view.request.method == "GET":
        return await _list_page(view)
    form = await view.form()
    key = text(form, "key")
    try:
        if key is None:
            raise InvalidRequest("key: name the key, such as order:A-1042.", param="key")
        written = await _write(view, key, form)
    except APIError as error:
        if _in_progress(error) and key is not None:
            return view.redirect(view.frame.project_url(entry_path(key)) + "?notice=in_progress")
        return await _list_page(
            view, error=error, values=_typed(form), status_code=error.status_code
        )
    notice = "created" if written.created else "saved"
    return view.redirect(view.frame.project_url(entry_path(written.key)) + f"?notice={notice}")


async def _entry_page(
    view: View,
    *,
    error: APIError | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    key = view.param("key")
    entry = await view.gateway.get(
        StateEntry, ENTRY, params={"key": key}, project_id=view.project_id, mode=view.mode
    )
    return view.render(
        "state_entry.html",
        status_code=status_code,
        entry=entry,
        read_only=read_only_reason(entry.key),
        error=error,
        values=values,
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
        **_helpers(),
    )


async def state_entry(view: View) -> Response:
    """One key: its value in full; a POST replaces it (``action=set``) or deletes it."""
    if view.request.method == "GET":
        return await _entry_page(view)
    key = view.param("key")
    form = await view.form()
    action = text(form, "action")
    here = view.frame.project_url(entry_path(key))
    try:
        if action == "delete":
            await view.gateway.change(
                StateDeleted, "DELETE", ENTRY, params={"key": key}, project_id=view.project_id,
                mode=view.mode, idempotency_key=idempotency_key(form),
            )  # fmt: skip
            return view.redirect(view.frame.project_url("state") + "?notice=deleted")
        if action == "set":
            written = await _write(view, key, form)
            return view.redirect(f"{here}?notice={'created' if written.created else 'saved'}")
        raise InvalidRequest("action: set or delete.", param="action")
    except APIError as error:
        if _in_progress(error):
            return view.redirect(f"{here}?notice=in_progress")
        if action == "delete":  # from the list or the entry page: the API's message, as a page
            raise
        return await _entry_page(
            view, error=error, values=_typed(form), status_code=error.status_code
        )


routes = [
    dashboard_page("/projects/{project_id}/{mode}/state", state_list, methods=("GET", "POST")),
    dashboard_page(
        "/projects/{project_id}/{mode}/state/{key}", state_entry, methods=("GET", "POST")
    ),
]
