"""Every dashboard route, and its static assets (served from this package: no CDN)."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from controlplane.dashboard.pages import (
    account,
    activities,
    api_keys,
    audit,
    billing,
    credentials,
    devices,
    instance,
    members,
    overview,
    projects,
    pushes,
    session,
    state,
    webhooks,
    widgets,
)

STATIC = Path(__file__).parent / "static"

routes: list[BaseRoute] = [
    *session.routes,
    *projects.routes,
    *overview.routes,
    *api_keys.routes,
    *pushes.routes,
    *devices.routes,
    *credentials.routes,
    *webhooks.routes,
    *activities.routes,
    *state.routes,
    *widgets.routes,
    *billing.routes,
    *instance.routes,
    *members.routes,
    *account.routes,
    *audit.routes,
    Mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static"),
]
