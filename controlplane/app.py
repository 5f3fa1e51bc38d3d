"""The ASGI application factory: where the API process is put together.

It is one of the composition roots allowed to import the worker package (``tests/test_layers.py``
names them): it hands the app the provider registry (``app.state.providers``), which the HTTP
layer knows only as a :class:`controlplane.payloads.ProviderCatalog` — who sends to which
platform, and how big a push is on each provider's wire — and the APNs channel manager
(``app.state.channels``), known to the API as :class:`controlplane.activities.BroadcastChannels`:
a broadcast Live Activity opens its channel before it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector
from starlette.applications import Starlette
from starlette.middleware import Middleware

from controlplane import db, mail
from controlplane.analytics.buffer import EventBuffer
from controlplane.api import health, reference, stripe_webhook
from controlplane.api.routing import build_routes
from controlplane.api.v1 import OPERATIONS
from controlplane.auth.api_key_cache import ApiKeyCache
from controlplane.auth.login_throttle import LoginThrottle
from controlplane.auth.oidc import STATE_COOKIE, OidcLogin, OidcStateMiddleware
from controlplane.auth.peppers import PepperRing
from controlplane.billing import StripeConnection
from controlplane.core.connections import queue_client
from controlplane.crypto import KeyRing
from controlplane.dashboard.answers import DashboardAnswers
from controlplane.dashboard.routes import routes as dashboard_routes
from controlplane.enqueue_relay import EnqueueRelay
from controlplane.errors import exception_handlers
from controlplane.events_hub import EventsHub
from controlplane.middleware.body_limit import BodySizeLimitMiddleware
from controlplane.middleware.session_cookie import SessionCookieRenewalMiddleware
from controlplane.middleware.stream_send import StreamSendMiddleware
from controlplane.middleware.telemetry import RequestMetrics, RequestTelemetryMiddleware
from controlplane.rate_limits import RateLimiter
from controlplane.realtime.hub import RealtimeHub
from controlplane.realtime.limits import ConnectionLimiter
from controlplane.settings import Settings
from workers.providers.apns_channels import ChannelAdmin
from workers.providers.registry import PROVIDERS


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
            app.state.enqueue_relay = EnqueueRelay(redis, registry)
            app.state.rate_limiter = RateLimiter(redis)
            app.state.event_buffer = EventBuffer(redis, settings.analytics_buffer_max_bytes)
            app.state.login_throttle = LoginThrottle(redis, settings)
            app.state.realtime_limiter = ConnectionLimiter(redis)
            renewing = asyncio.create_task(app.state.realtime_limiter.run())
            if settings.secret_key is not None:
                app.state.api_keys = ApiKeyCache(redis, PepperRing.from_settings(settings))
            app.state.stripe = StripeConnection.open(settings)
            mail.warn_if_mail_cannot_be_sent(app.state.mail_sender)
            try:
                yield
            finally:
                await app.state.enqueue_relay.close()
                await app.state.events_hub.close()
                await app.state.realtime_hub.close()
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing
                await app.state.realtime_limiter.release_all()
                await redis.aclose(close_connection_pool=True)
                if app.state.stripe is not None:
                    await app.state.stripe.close()

    middleware = [
        # Body chunks of realtime streams go out through the send given here, past the layers
        # below that only act on a response's start (controlplane/middleware/stream_send.py).
        Middleware(StreamSendMiddleware),
        # A session cookie signed anew after a secret-key rotation, on whatever answer goes out
        # (even a page below that replaced an error).
        Middleware(SessionCookieRenewalMiddleware, settings=settings),
        # What the API answers in JSON (404, 405, 413, 503, 500) is a page under /dashboard/,
        # and every dashboard answer has its security headers.
        Middleware(DashboardAnswers),
        Middleware(RequestTelemetryMiddleware, metrics=RequestMetrics(registry)),
        Middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes),
    ]
    if settings.oidc_enabled:
        # authlib keeps the OIDC state/nonce/PKCE verifier here between the two legs.
        middleware.append(
            Middleware(
                OidcStateMiddleware,
                secret_keys=settings.require_secret_keys(),
                session_cookie=STATE_COOKIE,
                max_age=600,
                same_site="lax",
                https_only=settings.secure_cookies,
            )
        )
    app = Starlette(
        routes=[
            *health.routes,
            *dashboard_routes,
            *reference.routes,
            *stripe_webhook.routes,
            *build_routes(OPERATIONS),
        ],
        middleware=middleware,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.metrics_registry = registry
    app.state.queue_depth = Gauge(
        "brik_queue_depth",
        "Work waiting for the workers: arq jobs and lane entries (read at scrape time).",
        registry=registry,
    )  # fmt: skip
    app.state.settings = settings
    app.state.events_hub = EventsHub(
        settings.redis_url, registry, per_project=settings.event_streams_per_project,
        per_process=settings.event_streams_per_process,
    )  # fmt: skip
    app.state.realtime_hub = RealtimeHub(settings.redis_url, registry)

    # Called by the server before it waits for open responses to finish (serving.py): event
    # streams and realtime streams end then, rather than holding a stopping process for their
    # whole length.
    def drain() -> None:
        app.state.events_hub.drain()
        app.state.realtime_hub.drain()

    app.state.drain = drain
    app.state.operations = OPERATIONS
    app.state.providers = PROVIDERS
    app.state.channels = ChannelAdmin(settings)  # Live Activity broadcast channels
    app.state.version = _version()
    app.state.openapi = None
    app.state.keyring = (
        KeyRing([key.get_secret_value() for key in settings.encryption_keys])
        if settings.encryption_keys
        else None
    )
    app.state.mail_sender = mail.load_sender(settings)
    app.state.oidc = OidcLogin(settings) if settings.oidc_enabled else None
    app.state.api_keys = None
    app.state.stripe = None
    return app


def _version() -> str:
    try:
        return version("brik-cloud")
    except PackageNotFoundError:
        return "0.0.0"
