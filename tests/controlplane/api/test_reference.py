"""``/docs`` shows the OpenAPI document in Swagger UI served by the app itself, no CDN."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.database


async def test_docs_is_a_page_whose_assets_the_app_serves_itself(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/v1/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    assert any(asset.endswith("swagger-ui.css") for asset in assets)
    for asset in assets:
        # Local paths only: the page must work offline and trust no third-party host.
        assert asset.startswith("/docs/assets/"), asset
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    # Swagger UI 5 or later: version 4 refuses to render an OpenAPI 3.1 document.
    assert "OAS31" in script.text or "isOAS31" in script.text


async def test_a_missing_asset_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/assets/no-such-file.js")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
