"""``/dashboard/instance``: the operator's page — every organization of this installation with
its plan and this month's pushes, and setting an organization's plan (or handing it back to
billing). It runs the ``/v1/instance`` operations, so only superusers get anything but a 403.

The organization goes in the form, not the path: an operator reaches organizations they are
not a member of, which no organization page (whose frame is the member's view) can show.
"""

from __future__ import annotations

from starlette.responses import Response

from controlplane.api.instance import InstanceOrganization
from controlplane.api.pagination import Page
from controlplane.dashboard.forms import text
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError, InvalidRequest

ORGANIZATIONS = "/v1/instance/organizations"
PLAN = ORGANIZATIONS + "/{organization_id}/plan"
PLAN_CHOICES = {
    "free": "Free",
    "pro": "Pro",
    "enterprise": "Enterprise",
    "billing": "Back to billing (what Stripe pays for)",
}
NOTICES = {"plan_changed": "Plan changed: its new limits apply from the next request."}


async def _page(view: View, *, error: APIError | None = None, status_code: int = 200) -> Response:
    starting_after = view.request.query_params.get("starting_after")
    organizations = await view.gateway.get(
        Page[InstanceOrganization],
        ORGANIZATIONS,
        query={"limit": "50", "starting_after": starting_after or ""},
    )
    return view.render(
        "instance.html",
        status_code=status_code,
        organizations=organizations,
        plan_choices=PLAN_CHOICES,
        notice=NOTICES.get(view.request.query_params.get("notice", "")),
        error=error,
        changed=view.request.query_params.get("organization"),
    )


async def instance(view: View) -> Response:
    if view.request.method == "GET":
        return await _page(view)
    form = await view.form()
    organization_id = text(form, "organization_id")
    try:
        if organization_id is None:
            raise InvalidRequest("Choose an organization.", param="organization_id")
        await view.gateway.run(
            "PUT",
            PLAN,
            params={"organization_id": organization_id},
            body={"plan": text(form, "plan") or ""},
        )
    except APIError as error:
        return await _page(view, error=error, status_code=error.status_code)
    return view.redirect(f"/dashboard/instance?notice=plan_changed&organization={organization_id}")


routes = [dashboard_page("/instance", instance, methods=("GET", "POST"))]
