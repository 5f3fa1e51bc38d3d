"""Fixtures of the API's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from controlplane.app import create_app
from controlplane.settings import Settings
from tests.support.servers import serving


@pytest.fixture
async def start(
    make_settings: Callable[..., Settings], database: None
) -> AsyncIterator[Callable[..., Any]]:
    """Serve the API on settings with the given overrides (``await start(plan_…=5)``: a client
    of it); each server stops with the test."""
    servers: list[Any] = []

    async def started(**overrides: Any) -> httpx.AsyncClient:
        server = serving(create_app(make_settings(**overrides)))
        url = await server.__aenter__()
        client = httpx.AsyncClient(base_url=url, timeout=60)
        servers.extend([server, client])
        return client

    yield started
    for resource in reversed(servers):
        await resource.__aexit__(None, None, None)
