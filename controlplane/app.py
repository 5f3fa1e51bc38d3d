"""The ASGI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from starlette.applications import Starlette
from starlette.middleware import Middleware

from controlplane import db
from controlplane.api import dashboard, health
from controlplane.errors import exception_handlers
from controlplane.middleware.body_limit import BodySizeLimitMiddleware
from controlplane.middleware.telemetry import RequestMetrics, RequestTelemetryMiddleware
from controlplane.settings import Settings
from workers.queue import queue_client


def create_app(settings: Settings) -> Starlette:
    """Build the control plane for ``settings``; nothing is connected until its lifespan runs."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with db.database(settings.database_url):
            redis = queue_client(settings.redis_url, settings.queue_name)
            app.state.redis = redis
            try:
                yield
            finally:
                await redis.aclose(close_connection_pool=True)

    app = Starlette(
        routes=[*health.routes, *dashboard.routes],
        middleware=[
            Middleware(RequestTelemetryMiddleware, metrics=RequestMetrics(registry)),
            Middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.metrics_registry = registry
    return app
