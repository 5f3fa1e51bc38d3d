"""A project's overview: this month's pushes against the plan's quota, delivery success,
devices, open Live Activities, what is waiting to go, and the latest failures."""

from __future__ import annotations

from starlette.responses import Response

from controlplane.api.stats import Stats
from controlplane.api.usage import Usage
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import PermissionDenied


async def overview(view: View) -> Response:
    stats = await view.gateway.get(Stats, "/v1/stats", project_id=view.project_id, mode=view.mode)
    usage: Usage | None = None
    try:  # the organization's meters: every role may read them
        usage = await view.gateway.get(
            Usage,
            "/v1/organizations/{organization_id}/usage",
            params={"organization_id": view.organization_id},
        )
    except PermissionDenied:
        usage = None
    meter = None
    if usage is not None:
        meter = usage.live.pushes if view.mode.value == "live" else usage.test.pushes
    return view.render("overview.html", stats=stats, usage=usage, meter=meter)


routes = [dashboard_page("/projects/{project_id}/{mode}", overview)]
