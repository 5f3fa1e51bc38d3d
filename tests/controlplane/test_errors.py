"""Every failure reaches the client as the one JSON error body, with the right status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controlplane.api.bodies import parse_body
from controlplane.app import create_app
from controlplane.models import ApiKey
from controlplane.settings import Settings
from tests.support.processes import free_port
from tests.support.servers import serving
from tests.support.tenants import make_tenant

pytestmark = pytest.mark.database


class Widget(BaseModel):
    name: str = Field(min_length=1)
    size: int = Field(ge=1)


async def create_widget(request: Request) -> Response:
    widget = await parse_body(request, Widget)
    return JSONResponse(widget.model_dump(), status_code=201)


async def explode(_request: Request) -> Response:
    raise RuntimeError("a bug")


@pytest.fixture
async def http(app: Starlette, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # Two routes built inline on the real app: one that parses a JSON body with the shared
    # helper, one with a bug in it.
    app.router.routes.append(Route("/test/widgets", create_widget, methods=["POST"]))
    app.router.routes.append(Route("/test/explode", explode, methods=["GET"]))
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


async def test_unknown_route_is_a_json_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/nothing-here")
    assert response.status_code == 404
    error = error_of(response)
    assert error["type"] == "not_found_error"
    assert error["code"] == "route_not_found"


async def test_wrong_method_is_a_json_405_with_allow(http: httpx.AsyncClient) -> None:
    response = await http.delete("/healthz")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"name": "a", "size": ', "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
    ],
)
async def test_malformed_json_is_a_400(http: httpx.AsyncClient, body: bytes, fragment: str) -> None:
    response = await http.post(
        "/test/widgets", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_json"
    assert fragment in str(error["message"])


async def test_wrong_content_type_is_a_415(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/test/widgets", content=b"name=a", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


async def test_invalid_field_names_the_param(http: httpx.AsyncClient) -> None:
    response = await http.post("/test/widgets", json={"name": "a", "size": 0})
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "size"
    assert error["code"] == "parameter_invalid"
    missing = await http.post("/test/widgets", json={"size": 3})
    assert error_of(missing)["code"] == "parameter_missing"
    assert error_of(missing)["param"] == "name"


async def test_valid_body_passes_through(http: httpx.AsyncClient) -> None:
    response = await http.post("/test/widgets", json={"name": "a", "size": 2})
    assert response.status_code == 201
    assert response.json() == {"name": "a", "size": 2}


async def test_declared_oversized_body_is_a_413(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    payload = b'{"name": "' + b"a" * settings.max_body_bytes + b'", "size": 1}'
    response = await http.post(
        "/test/widgets", content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


async def test_streamed_oversized_body_is_a_413(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    chunk = b"a" * 65536
    chunks = settings.max_body_bytes // len(chunk) + 2

    async def body() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield chunk

    # No Content-Length: httpx sends it chunked, so only counting the stream can catch it.
    response = await http.post(
        "/test/widgets", content=body(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


async def test_a_bug_is_a_json_500_not_a_traceback(http: httpx.AsyncClient) -> None:
    response = await http.get("/test/explode")
    assert response.status_code == 500
    error = error_of(response)
    assert error["type"] == "api_error"
    assert "a bug" not in str(error["message"])
    assert response.headers["request-id"]


async def test_a_redis_outage_is_a_503_that_names_redis(
    make_settings: Callable[..., Settings], database: None
) -> None:
    # Any route, one answer: the handlers in controlplane/errors.py, not a try/except per route.
    acme = await make_tenant("Acme")
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as client:
        probe = await client.post("/healthz/pipeline", params={"timeout": "1"})
        # Revoking a key must reach every API process through Redis first (reading keys goes
        # on without Redis: their last use as the database knows it).
        key = await ApiKey.get(project=acme.project)
        keys = await client.delete(
            f"/v1/projects/{acme.project.id}/api_keys/{key.id}", headers=acme.owner.headers
        )
    for response in (probe, keys):
        assert response.status_code == 503, response.text
        error = error_of(response)
        assert (error["type"], error["code"], error["param"]) == (
            "api_error", "dependency_unavailable", "redis",
        )  # fmt: skip
        assert "Redis is unavailable" in str(error["message"])
