from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from controlplane.app import create_app
from controlplane.models import WorkerHeartbeat
from controlplane.settings import Settings
from tests.support.processes import free_port
from tests.support.servers import running_worker, serving

pytestmark = pytest.mark.database


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_both_dependencies_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


async def test_readyz_names_redis_when_it_is_down(
    make_settings: Callable[..., Settings], database: None
) -> None:
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] != "ok"
    assert body["error"]["code"] == "dependency_unavailable"
    assert "redis" in body["error"]["message"]


async def test_pipeline_probe_goes_through_redis_and_a_worker_to_the_database(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    async with running_worker(settings):
        response = await client.post("/healthz/pipeline")
    assert response.status_code == 200, response.text
    worker_id = response.json()["worker_id"]
    beat = await WorkerHeartbeat.get(worker_id=worker_id)
    assert beat.beats >= 1


async def test_pipeline_probe_says_503_when_no_worker_answers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/healthz/pipeline", params={"timeout": "0.3"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "worker_unavailable"
    assert await WorkerHeartbeat.all().count() == 0


async def test_pipeline_probe_rejects_a_bad_timeout(client: httpx.AsyncClient) -> None:
    response = await client.post("/healthz/pipeline", params={"timeout": "lots"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "timeout"
