"""A project's webhook endpoints in the page's mode, and each one's delivery log.

The list page creates endpoints (URL, type, the events wanted — each type, its family or all —
and a description) and shows the new signing secret once, as the API answers it. An
endpoint's page shows its health, the last deliveries (status, attempts, the answer's status,
latency and excerpt, or the error) and acts on it: send a test event, resend a delivery,
rotate the secret (shown once, the old one overlapping for a day), disable or enable, delete.
Everything goes through the ``/v1/webhook_endpoints`` operations, as the member's role allows:
developers and above change, viewers read.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from controlplane.api.pagination import Page
from controlplane.api.webhook_endpoints import (
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
)
from controlplane.dashboard.forms import text
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError
from controlplane.models import EndpointType
from controlplane.webhook_events import EVENT_TYPES

ENDPOINTS = "/v1/webhook_endpoints"
ENDPOINT = ENDPOINTS + "/{webhook_endpoint_id}"
NOTICES = {
    "tested": "Test event queued: it shows in the log below within a second or two.",
    "resent": "Delivery resent: a new delivery of the same event is on its way.",
    "disabled": "Endpoint disabled: nothing is sent to it; what was waiting is marked failed.",
    "enabled": "Endpoint enabled: new events go to it again.",
    "deleted": "Endpoint deleted, with its delivery log.",
}


async def _list_page(
    view: View, *, status_code: int = 200, error: APIError | None = None,
    created: WebhookEndpointWithSecret | None = None, values: dict[str, Any] | None = None,
) -> Response:  # fmt: skip
    endpoints = await view.gateway.get(
        Page[WebhookEndpoint], ENDPOINTS, query={"limit": "100"},
        project_id=view.project_id, mode=view.mode,
    )  # fmt: skip
    return view.render(
        "webhooks.html", status_code=status_code, endpoints=endpoints, created=created,
        error=error, values=values or {}, event_types=EVENT_TYPES,
        endpoint_types=[kind.value for kind in EndpointType],
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
    )  # fmt: skip


async def webhooks(view: View) -> Response:
    if view.request.method == "GET":
        return await _list_page(view)
    form = await view.form()
    body: dict[str, Any] = {
        "url": text(form, "url") or "",
        "type": text(form, "type") or EndpointType.WEBHOOK.value,
        "events": [name for name in form.getlist("events") if isinstance(name, str)],
    }
    if description := text(form, "description"):
        body["description"] = description
    try:
        created = await view.project_run("POST", ENDPOINTS, body=body)
    except APIError as error:
        return await _list_page(view, status_code=error.status_code, error=error, values=body)
    assert isinstance(created, WebhookEndpointWithSecret)
    return await _list_page(view, status_code=201, created=created)


async def _endpoint_page(
    view: View, *, status_code: int = 200, error: APIError | None = None,
    rotated: WebhookEndpointWithSecret | None = None,
) -> Response:  # fmt: skip
    params = {"webhook_endpoint_id": view.param("webhook_endpoint_id")}
    endpoint = await view.gateway.get(
        WebhookEndpoint, ENDPOINT, params=params, project_id=view.project_id, mode=view.mode
    )
    query = {"limit": "50"}
    if status := view.request.query_params.get("status"):
        query["status"] = status
    deliveries = await view.gateway.get(
        Page[WebhookDelivery], ENDPOINT + "/deliveries", params=params, query=query,
        project_id=view.project_id, mode=view.mode,
    )  # fmt: skip
    return view.render(
        "webhook.html", status_code=status_code, endpoint=endpoint, deliveries=deliveries,
        error=error, rotated=rotated, status_filter=status or "",
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
    )  # fmt: skip


async def webhook(view: View) -> Response:
    return await _endpoint_page(view)


async def webhook_action(view: View) -> Response:
    """Test, resend, rotate, disable, enable or delete (``action`` in the form)."""
    form = await view.form()
    endpoint_id = view.param("webhook_endpoint_id")
    params = {"webhook_endpoint_id": endpoint_id}
    here = view.frame.project_url(f"webhooks/{endpoint_id}")
    action = text(form, "action")
    try:
        if action == "test":
            await view.project_run("POST", ENDPOINT + "/test", params=params)
            return view.redirect(here + "?notice=tested")
        if action == "resend":
            delivery = {**params, "webhook_delivery_id": text(form, "delivery_id") or ""}
            await view.project_run("POST", ENDPOINT + "/deliveries/{webhook_delivery_id}/resend",
                                   params=delivery)  # fmt: skip
            return view.redirect(here + "?notice=resent")
        if action in ("disable", "enable"):
            await view.project_run("PATCH", ENDPOINT, params=params,
                                   body={"enabled": action == "enable"})  # fmt: skip
            return view.redirect(here + f"?notice={action}d")
        if action == "rotate":
            rotated = await view.project_run("POST", ENDPOINT + "/rotate_secret", params=params,
                                             body={"overlap_hours": 24})  # fmt: skip
            assert isinstance(rotated, WebhookEndpointWithSecret)
            return await _endpoint_page(view, rotated=rotated)
        if action == "delete":
            await view.project_run("DELETE", ENDPOINT, params=params)
            return view.redirect(view.frame.project_url("webhooks") + "?notice=deleted")
    except APIError as error:
        return await _endpoint_page(view, status_code=error.status_code, error=error)
    return await _endpoint_page(
        view, status_code=400, error=APIError("Unknown action.", status_code=400)
    )


routes = [
    dashboard_page("/projects/{project_id}/{mode}/webhooks", webhooks, methods=("GET", "POST")),
    dashboard_page("/projects/{project_id}/{mode}/webhooks/{webhook_endpoint_id}", webhook),
    dashboard_page(
        "/projects/{project_id}/{mode}/webhooks/{webhook_endpoint_id}",
        webhook_action,
        methods=("POST",),
    ),
]
