"""``/docs``: the API reference — the OpenAPI document (``/v1/openapi.json``) in Swagger UI.

The raw document is for machines; people want to browse operations, schemas and examples. The
viewer's JavaScript and CSS come from the ``swagger-ui-py`` package (Swagger UI 5, which reads
OpenAPI 3.1 — the ``swagger-ui-bundle`` package still ships Swagger UI 4, which refuses to
render a 3.1 document) and are served by this app under ``/docs/assets/``, so the page works
offline, behind a firewall and without trusting a CDN. We use only the package's static files,
never its framework glue.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"
# Starlette finds the directory through the package's import spec, without importing it.
ASSETS_PACKAGE = ("swagger_ui", "static")

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Brik Cloud API reference</title>
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
}});
</script>
</body>
</html>
"""


async def reference(_request: Request) -> Response:
    return HTMLResponse(_PAGE)


routes: list[BaseRoute] = [
    Route("/docs", reference, methods=["GET"]),
    Mount(ASSETS_PATH, app=StaticFiles(packages=[ASSETS_PACKAGE]), name="docs_assets"),
]
