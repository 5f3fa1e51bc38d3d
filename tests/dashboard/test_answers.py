"""Every answer under /dashboard/ is a page with the dashboard's security headers: those no page
gives (no such page, a wrong method, a body too large or unparsable, a bug) included."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controlplane.dashboard.answers import DashboardAnswers
from controlplane.middleware.telemetry import RequestMetrics, RequestTelemetryMiddleware
from controlplane.models import Role
from controlplane.settings import Settings
from tests.controlplane.test_database_outage import forwarded
from tests.support.processes import free_port, running_command, server_environment
from tests.support.servers import serving
from tests.support.tenants import make_tenant


def assert_dashboard_headers(answer: httpx.Response) -> None:
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], answer.url
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.database
async def test_answers_no_page_gives_are_pages_too_with_the_policy(
    dashboard_url: str, database: None
) -> None:
    tenant = await make_tenant("Lost Co", roles=(Role.OWNER,))
    project = f"/dashboard/projects/{tenant.project.id}/test"
    multipart = "multipart/form-data"
    async with httpx.AsyncClient(base_url=dashboard_url, headers={"Origin": dashboard_url}) as me:
        signed_out = await me.get(project)  # to the sign-in page
        signed_in = await me.post(
            "/dashboard/sign-in",
            data={"email": tenant.owner.user.email, "password": tenant.owner.password},
        )
        files = {f"file{n}": (f"{n}.p8", b"x") for n in range(5)}
        answers = {
            "no such page": (404, await me.get("/dashboard/no-such-page")),
            "no such static file": (404, await me.get("/dashboard/static/nope.js")),
            "PUT on a page": (405, await me.put(project + "/devices")),
            "GET on a form": (405, await me.get(project + "/devices/dev_x/delete")),
            "OPTIONS": (405, await me.options(project)),
            "no boundary": (400, await me.post(project + "/compose", content=b"x",
                                               headers={"Content-Type": multipart})),
            "five files": (400, await me.post(project + "/compose", files=files)),
            "too large": (413, await me.post(project + "/compose", data={"x": "y" * 2**21})),
        }  # fmt: skip
        script = await me.get("/dashboard/static/app.js")
    for what, (status, answer) in answers.items():
        assert answer.status_code == status, (what, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html"), (what, answer.text[:200])
        assert '<div class="error-box" role="alert">' in answer.text, what
        assert_dashboard_headers(answer)
    assert set(answers["PUT on a page"][1].headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert "Maximum number of files is 4" in answers["five files"][1].text
    assert "Request-Id" in answers["too large"][1].headers
    for redirect in (signed_out, signed_in):
        assert redirect.status_code == 303
        assert_dashboard_headers(redirect)
        assert redirect.headers["cache-control"] == "no-store"
    assert script.headers["content-type"].startswith("text/javascript")
    assert_dashboard_headers(script)
    assert script.headers.get("cache-control") != "no-store"  # assets stay cacheable


async def test_a_bug_behind_a_page_is_a_500_page_naming_the_request(settings: Settings) -> None:
    async def broken(_request: Request) -> Response:
        raise RuntimeError("a bug")

    app = Starlette(
        routes=[Route("/dashboard/broken", broken)],
        middleware=[
            Middleware(DashboardAnswers),
            Middleware(RequestTelemetryMiddleware, metrics=RequestMetrics(CollectorRegistry())),
        ],
    )
    app.state.settings = settings
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        answer = await client.get("/dashboard/broken")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "An internal error occurred; it has been logged." in answer.text
    assert "a bug" not in answer.text
    assert f"request <code>{answer.headers['request-id']}</code>" in answer.text
    assert_dashboard_headers(answer)


async def test_the_database_gone_is_a_503_page_that_says_so(
    database_url: str, redis_url: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with forwarded(database_url) as (forwarder, via_forwarder):
        env = server_environment(via_forwarder, redis_url, "brik-test:dashboard-db-outage")
        with running_command("serve", "--host", "127.0.0.1", "--port", str(port), env=env,
                             ready_url=f"{url}/healthz"):  # fmt: skip
            async with httpx.AsyncClient(base_url=url, headers={"Origin": url}) as browser:
                forwarder.cut()  # PostgreSQL is gone for this server
                signing_in = await browser.post(
                    "/dashboard/sign-in", data={"email": "ada@example.com", "password": "pw"}
                )
                accepting = await browser.post(
                    "/dashboard/accept-invitation",
                    data={"token": "bk_inv_x", "password": "a long enough password"},
                )
    for answer in (signing_in, accepting):
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("text/html")
        assert "The database is unavailable; try again shortly." in answer.text
        assert_dashboard_headers(answer)
