"""The admin dashboard. A placeholder page until the dashboard issue lands."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Brik Cloud</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto">
<h1>Brik Cloud</h1>
<p>The API is running. The admin dashboard is not built yet; use the API and the
<code>brik-cloud</code> command meanwhile.</p>
<ul><li><a href="/docs">/docs</a>: the API reference</li>
<li><a href="/readyz">/readyz</a></li><li><a href="/metrics">/metrics</a></li></ul>
</body></html>"""


async def dashboard(_request: Request) -> Response:
    return HTMLResponse(_PAGE)


async def root(_request: Request) -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


routes = [
    Route("/", root, methods=["GET"]),
    Route("/dashboard/", dashboard, methods=["GET"]),
]
