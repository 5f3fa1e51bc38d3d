"""A project's devices in the page's mode: search, a device's detail, delete.

Tokens are never shown whole: the API answers them redacted (last four characters), and that
is all a page has.
"""

from __future__ import annotations

from starlette.responses import Response

from controlplane.api.activities import ActivityOut
from controlplane.api.devices import Device
from controlplane.api.pagination import Page
from controlplane.api.pushes import DeliveryOut
from controlplane.dashboard.page import View, dashboard_page

DEVICE = "/v1/devices/{device_id}"
FILTERS = ("user_id", "tag", "platform", "status")
NOTICES = {"deleted": "Device deleted: it gets no more pushes until the app registers again."}


async def devices(view: View) -> Response:
    filters = {name: (view.request.query_params.get(name) or "").strip() for name in FILTERS}
    query = {**filters, "limit": "50",
             "starting_after": view.request.query_params.get("starting_after", "")}  # fmt: skip
    page = await view.gateway.get(
        Page[Device], "/v1/devices", query=query, project_id=view.project_id, mode=view.mode
    )
    return view.render(
        "devices.html",
        devices=page,
        filters=filters,
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
    )


async def device(view: View) -> Response:
    params = {"device_id": view.param("device_id")}
    scope = {"project_id": view.project_id, "mode": view.mode}
    row = await view.gateway.get(Device, DEVICE, params=params, **scope)
    deliveries = await view.gateway.get(
        Page[DeliveryOut], DEVICE + "/deliveries", params=params, query={"limit": "20"}, **scope
    )
    activities = await view.gateway.get(
        Page[ActivityOut], "/v1/activities", query={"device_id": row.id, "limit": "20"}, **scope
    )
    return view.render("device.html", device=row, deliveries=deliveries, activities=activities)


async def delete(view: View) -> Response:
    await view.form()
    await view.project_run("DELETE", DEVICE, params={"device_id": view.param("device_id")})
    return view.redirect(view.frame.project_url("devices") + "?notice=deleted")


routes = [
    dashboard_page("/projects/{project_id}/{mode}/devices", devices),
    dashboard_page("/projects/{project_id}/{mode}/devices/{device_id}", device),
    dashboard_page(
        "/projects/{project_id}/{mode}/devices/{device_id}/delete", delete, methods=("POST",)
    ),
]
