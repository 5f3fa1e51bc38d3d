"""An organization's projects: list, create, rename; creating an organization."""

from __future__ import annotations

from starlette.responses import Response

from controlplane.api.organizations import Organization
from controlplane.api.projects import Project
from controlplane.dashboard.forms import text
from controlplane.dashboard.page import View, dashboard_page
from controlplane.errors import APIError


async def projects(view: View) -> Response:
    error: APIError | None = None
    if view.request.method == "POST":
        form = await view.form()
        try:
            created = await view.gateway.run(
                "POST",
                "/v1/organizations/{organization_id}/projects",
                params={"organization_id": view.organization_id},
                body={"name": text(form, "name") or ""},
            )
        except APIError as exc:
            error = exc
        else:
            assert isinstance(created, Project)
            return view.redirect(f"/dashboard/projects/{created.id}/test")
    return view.render(
        "projects.html", status_code=error.status_code if error else 200, error=error
    )


async def create_organization(view: View) -> Response:
    form = await view.form()
    try:
        created = await view.gateway.run(
            "POST", "/v1/organizations", body={"name": text(form, "name") or ""}
        )
    except APIError as error:
        return view.render("welcome.html", status_code=error.status_code, error=error)
    assert isinstance(created, Organization)
    return view.redirect(f"/dashboard/organizations/{created.id}/projects")


routes = [
    dashboard_page("/organizations", create_organization, methods=("POST",)),
    dashboard_page("/organizations/{organization_id}/projects", projects, methods=("GET", "POST")),
]
