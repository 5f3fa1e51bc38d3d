"""Serve an app over real HTTP inside the test's event loop, and run a real arq worker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from controlplane.core.connections import queue_client
from controlplane.crypto import KeyRing
from controlplane.serving import QuietSignalServer, wait_until_started
from controlplane.settings import Settings
from workers.in_flight import InFlightBudget
from workers.provider_cache import ProviderCache
from workers.worker import run_worker


def bound_socket() -> tuple[socket.socket, str]:
    """A listening-ready socket on a free loopback port, and the base URL it will serve.

    For apps that must know their own URL before they start (OIDC redirect URIs).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def serving(
    app: Starlette, bound: tuple[socket.socket, str] | None = None
) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free loopback port (or ``bound``); yields its base URL."""
    sock, url = bound or bound_socket()
    config = uvicorn.Config(app, log_config=None, lifespan="on")
    server = QuietSignalServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        if not await wait_until_started(server, task):
            task.result()  # startup failed: raise why
            raise RuntimeError("uvicorn stopped before it started")
        yield url
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[None]:
    """A real arq worker on ``settings``' Redis queue, stopped (and awaited) on exit."""
    task = asyncio.create_task(run_worker(settings, handle_signals=False))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def worker_context(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """What a worker hands its jobs, for a test that calls a job's function itself."""
    keyring = KeyRing([key.get_secret_value() for key in settings.encryption_keys])
    redis = queue_client(settings.redis_url, settings.queue_name)
    providers = ProviderCache(settings, keyring)
    try:
        yield {
            "settings": settings, "keyring": keyring, "providers": providers, "redis": redis,
            "in_flight": InFlightBudget(settings.delivery_in_flight_per_connection),
        }  # fmt: skip
    finally:
        await providers.close_retired(everything=True)
        await redis.aclose(close_connection_pool=True)
