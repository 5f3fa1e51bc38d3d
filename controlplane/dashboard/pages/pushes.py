"""Sending pushes and following them: the composer, a push's live page, the history.

The composer builds the body of ``POST /v1/pushes`` from its fields (plus an optional JSON of
any other documented field: localization keys, ``apns`` / ``android`` overrides …). *Preview*
runs ``POST /v1/pushes/preview``: what APNs and FCM would receive and its size against their
4 KB limits. *Send* runs ``POST /v1/pushes`` with the idempotency key the form was rendered
with, so a double click or a resubmitted form sends once. The push's page then follows it live
through the push's own event stream (``GET …/pushes/{push_id}/events``, relayed for the
signed-in member), and lists each delivery with its reason.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.responses import Response

from controlplane.api.pagination import Page
from controlplane.api.pushes import DeliveryOut, PushDetail, PushPreview, PushSent, PushSummary
from controlplane.dashboard.forms import (
    idempotency_key,
    integer,
    json_object,
    lines,
    new_idempotency_key,
    text,
    utc_moment,
)
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError, InvalidRequest

KINDS = ("alert", "background", "liveactivity", "widget")
PUSH = "/v1/pushes/{push_id}"
NOTICES = {"canceled": "The scheduled push is canceled; its recipients get nothing."}
# The API's warning codes (PushSent.warnings) the composer's redirect names, said for a person.
# Only these are shown: a link must not make the page say words of its choosing.
WARNINGS = {
    "no_recipients": "no device can receive this push: nothing is sent.",
    "no_live_activity_token": "some iOS devices have no Live Activity token and were skipped.",
    "no_push_to_start_token": "some iOS devices have no push-to-start token and were skipped.",
    "no_widget_push_token": "some iOS devices have no widget push token and were skipped.",
}


def _alert(form: FormData) -> dict[str, Any]:
    alert: dict[str, Any] = {}
    for name in ("title", "subtitle", "body", "sound", "thread_id", "category", "image_url",
                 "interruption_level", "channel_id"):  # fmt: skip
        if (value := text(form, f"alert.{name}")) is not None:
            alert[name] = value
    if (badge := integer(form, "alert.badge")) is not None:
        alert["badge"] = badge
    return alert


def content_of(form: FormData) -> dict[str, Any]:
    """The push content (``POST /v1/pushes/preview``'s body) the composer's fields describe."""
    kind = text(form, "kind") or "alert"
    content: dict[str, Any] = {"kind": kind}
    if kind == "alert":
        content["alert"] = _alert(form)
    if kind == "liveactivity":
        live: dict[str, Any] = {
            "event": text(form, "live_activity.event") or "update",
            "content_state": json_object(form, "live_activity.content_state") or {},
        }
        if (attributes_type := text(form, "live_activity.attributes_type")) is not None:
            live["attributes_type"] = attributes_type
        if (attributes := json_object(form, "live_activity.attributes")) is not None:
            live["attributes"] = attributes
        if alert := {k: v for k, v in _alert(form).items() if k in ("title", "body", "sound")}:
            live["alert"] = alert
        content["live_activity"] = live
    if kind == "widget":
        content["widget"] = {"kind": text(form, "widget.kind") or ""}
    if kind in ("alert", "background") and (data := json_object(form, "data")) is not None:
        content["data"] = data
    if (priority := text(form, "priority")) is not None:
        content["priority"] = priority
    if (ttl := integer(form, "ttl")) is not None:
        content["ttl"] = ttl
    if (collapse_id := text(form, "collapse_id")) is not None:
        content["collapse_id"] = collapse_id
    extra = json_object(form, "extra")
    if extra is not None:
        if not isinstance(extra, dict):
            raise InvalidRequest("extra: a JSON object of more fields.", param="extra")
        for name, value in extra.items():
            if isinstance(value, dict) and isinstance(content.get(name), dict):
                content[name] = {**content[name], **value}
            else:
                content[name] = value
    return content


def target_of(form: FormData) -> dict[str, list[str]]:
    return {
        name: values
        for name in ("device_ids", "user_ids", "tags")
        if (values := lines(form, f"to.{name}"))
    }


async def compose(view: View) -> Response:
    context: dict[str, Any] = {"kinds": KINDS, "values": {}, "preview": None, "error": None}
    if view.request.method == "POST":
        form = await view.form()
        context["values"] = {name: value for name, value in form.items() if isinstance(value, str)}
        key = idempotency_key(form) or new_idempotency_key()
        context["idempotency_key"] = key
        try:
            content = content_of(form)
            if text(form, "action") == "preview":
                context["preview"] = await view.project_run(
                    "POST", "/v1/pushes/preview", body=content
                )
                assert isinstance(context["preview"], PushPreview)
                return view.render("compose.html", **context)
            body = {**content, "to": target_of(form)}
            if (send_at := utc_moment(form, "send_at")) is not None:
                body["send_at"] = send_at
            # A resubmitted form gets the first answer back (replayed, or its refusal).
            sent = await view.gateway.change(
                PushSent, "POST", "/v1/pushes", body=body, idempotency_key=key,
                project_id=view.project_id, mode=view.mode,
            )  # fmt: skip
        except APIError as error:
            context["error"] = error
            return view.render("compose.html", status_code=error.status_code, **context)
        url = view.frame.project_url(f"pushes/{sent.id}")
        warnings = "&".join(f"warning={warning.code}" for warning in sent.warnings)
        return view.redirect(url + (f"?{warnings}" if warnings else ""))
    context["idempotency_key"] = new_idempotency_key()
    return view.render("compose.html", **context)


async def push_page(view: View) -> Response:
    params = {"push_id": view.param("push_id")}
    push = await view.gateway.get(
        PushDetail, PUSH, params=params, project_id=view.project_id, mode=view.mode
    )
    status = view.request.query_params.get("status") or None
    codes = view.request.query_params.getlist("warning")
    query = {"limit": "100", "status": status or "",
             "starting_after": view.request.query_params.get("starting_after", "")}  # fmt: skip
    deliveries = await view.gateway.get(
        Page[DeliveryOut], PUSH + "/deliveries", params=params, query=query,
        project_id=view.project_id, mode=view.mode,
    )  # fmt: skip
    return view.render(
        "push.html",
        push=push,
        deliveries=deliveries,
        status_filter=status,
        warnings=[WARNINGS[code] for code in codes if code in WARNINGS],
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
    )


async def push_events(view: View) -> Response:
    """The push's event stream for the page's script (the API's stream, for the member)."""
    result = await view.project_run(
        "GET", PUSH + "/events", params={"push_id": view.param("push_id")}
    )
    assert isinstance(result, Response)
    return result


async def cancel(view: View) -> Response:
    await view.form()
    await view.project_run("POST", PUSH + "/cancel", params={"push_id": view.param("push_id")})
    return view.redirect(view.frame.project_url(f"pushes/{view.param('push_id')}?notice=canceled"))


async def history(view: View) -> Response:
    query = {name: view.request.query_params.get(name, "")
             for name in ("status", "kind", "starting_after")}  # fmt: skip
    for name, bound in (("created_gte", "from"), ("created_lt", "until")):
        if raw := view.request.query_params.get(bound):
            query[name] = f"{raw}T00:00:00+00:00"
    query["limit"] = "50"
    pushes = await view.gateway.get(
        Page[PushSummary], "/v1/pushes", query=query, project_id=view.project_id, mode=view.mode
    )
    filters = {name: view.request.query_params.get(name, "")
               for name in ("status", "kind", "from", "until")}  # fmt: skip
    return view.render("pushes.html", pushes=pushes, filters=filters, kinds=KINDS)


routes = [
    dashboard_page("/projects/{project_id}/{mode}/compose", compose, methods=("GET", "POST")),
    dashboard_page("/projects/{project_id}/{mode}/pushes", history),
    dashboard_page("/projects/{project_id}/{mode}/pushes/{push_id}", push_page),
    dashboard_page("/projects/{project_id}/{mode}/pushes/{push_id}/events", push_events),
    dashboard_page(
        "/projects/{project_id}/{mode}/pushes/{push_id}/cancel", cancel, methods=("POST",)
    ),
]
