"""The OpenAPI document is valid 3.1 and describes every /v1 route the app serves."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette

from controlplane.api.routing import ApiRoute

pytestmark = pytest.mark.database


async def test_the_document_is_valid_and_covers_every_v1_route(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    served = {
        (path, method.lower())
        for route in app.routes
        if isinstance(route, ApiRoute) and route.path.startswith("/v1")
        for path, method in ((route.path, m) for m in route.operations)
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented
    create_key = document["paths"]["/v1/projects/{project_id}/api_keys"]["post"]
    body_ref = create_key["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][body_ref.rsplit("/", 1)[-1]]
    assert set(body["required"]) == {"name", "kind", "mode"}
    assert {"201", "400", "401", "403", "404"} <= set(create_key["responses"])
    listing = document["paths"]["/v1/organizations"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "starting_after"}


async def test_statuses_beyond_the_usual_are_documented(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/v1/openapi.json")).json()["paths"]
    login = paths["/v1/auth/login"]["post"]["responses"]
    assert {"200", "400", "401", "429"} <= set(login)
    assert "invalid_credentials" in login["401"]["description"]
    assert {"409", "422"} <= set(paths["/v1/pushes"]["post"]["responses"])  # Idempotency-Key
    assert "404" in paths["/v1/devices/unregister"]["post"]["responses"]
