from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tortoise import Tortoise

from controlplane.app import create_app
from controlplane.settings import Settings
from tests.support.processes import free_port
from tests.support.servers import serving

pytestmark = pytest.mark.database


async def test_the_app_connects_the_orm_for_its_request_tasks_and_closes_it(
    make_settings: Callable[..., Settings],
) -> None:
    assert not Tortoise.is_inited()
    app = create_app(make_settings())
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        # Handlers run in tasks other than the lifespan's: they must still see the ORM.
        responses = [await http.get("/readyz") for _ in range(3)]
        assert Tortoise.is_inited()
    assert [r.json()["checks"]["database"] for r in responses] == ["ok"] * 3
    assert not Tortoise.is_inited()


async def test_readyz_names_the_database_when_it_is_down(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(database_url=f"postgres://postgres@127.0.0.1:{free_port()}/brik")
    async with (
        serving(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        response = await http.get("/readyz")
        alive = await http.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "ok"
    assert response.json()["checks"]["database"] != "ok"
    assert "database" in response.json()["error"]["message"]
    assert alive.status_code == 200  # liveness does not depend on the database
