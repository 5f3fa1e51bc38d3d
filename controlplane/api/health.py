"""Liveness, readiness, metrics and the end-to-end pipeline probe."""

from __future__ import annotations

import asyncio
import secrets
import time

from arq.connections import ArqRedis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tortoise.connection import get_connection

from controlplane.core.queue import enqueue_heartbeat, queue_depth
from controlplane.errors import InvalidRequest, ServiceUnavailable, error_body
from controlplane.models import WorkerHeartbeat

CHECK_TIMEOUT_SECONDS = 2.0
PIPELINE_TIMEOUT_SECONDS = 5.0
PIPELINE_MAX_TIMEOUT_SECONDS = 30.0


async def healthz(_request: Request) -> Response:
    """The process is alive and serving; says nothing about its dependencies."""
    return JSONResponse({"status": "ok"})


async def _check_database() -> None:
    await get_connection("default").execute_query("SELECT 1")


async def _check_redis(redis: ArqRedis) -> None:
    await redis.ping()


async def _probe(check: asyncio.Future[None] | asyncio.Task[None]) -> str:
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"timed out after {CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:  # any failure of a dependency is a "not ready" answer
        return f"{type(exc).__name__}: {exc}"[:300]
    return "ok"


async def readyz(request: Request) -> Response:
    """200 when PostgreSQL (or SQLite) and Redis both answer; 503 naming the one that does not."""
    redis: ArqRedis = request.app.state.redis
    database, redis_status = await asyncio.gather(
        _probe(asyncio.ensure_future(_check_database())),
        _probe(asyncio.ensure_future(_check_redis(redis))),
    )
    checks = {"database": database, "redis": redis_status}
    down = [name for name, result in checks.items() if result != "ok"]
    if down:
        error = error_body(
            "api_error", "dependency_unavailable", f"Not ready: {', '.join(down)} unreachable."
        )
        return JSONResponse({"status": "unavailable", "checks": checks, **error}, status_code=503)
    return JSONResponse({"status": "ok", "checks": checks})


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics_registry
    redis: ArqRedis = request.app.state.redis
    try:
        depth = await queue_depth(redis)
    except (RedisError, OSError):
        pass  # Redis is down: /readyz says so; the last known depth stays
    else:
        request.app.state.queue_depth.set(depth)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def pipeline(request: Request) -> Response:
    """Send a heartbeat job through Redis to a worker and wait for its database write.

    Proves the whole path API → Redis → worker → database. Writes at most one row per
    worker process, so it is safe to leave unauthenticated.
    """
    timeout = _timeout_param(request)
    redis: ArqRedis = request.app.state.redis
    probe_id = secrets.token_hex(8)
    started = time.perf_counter()
    # A probe nobody picked up in time expires instead of running late.
    job = await enqueue_heartbeat(redis, probe_id, expires=timeout)
    if job is None:  # only when a job with the same id exists; ids are random
        raise ServiceUnavailable("Could not enqueue the heartbeat job.")
    try:
        worker_id, beats = await job.result(timeout=timeout, poll_delay=0.02)
    except TimeoutError:
        raise ServiceUnavailable(
            f"No worker completed the heartbeat within {timeout:g}s.",
            code="worker_unavailable",
        ) from None
    beat = await WorkerHeartbeat.get_or_none(worker_id=worker_id)
    if beat is None or beat.beats < beats:
        raise ServiceUnavailable("The worker answered but its heartbeat row is missing.")
    return JSONResponse(
        {
            "status": "ok",
            "worker_id": worker_id,
            "round_trip_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    )


def _timeout_param(request: Request) -> float:
    raw = request.query_params.get("timeout")
    if raw is None:
        return PIPELINE_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= PIPELINE_MAX_TIMEOUT_SECONDS:
        raise InvalidRequest(
            f"timeout must be a number of seconds in (0, {PIPELINE_MAX_TIMEOUT_SECONDS:g}].",
            param="timeout",
        )
    return value


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/healthz/pipeline", pipeline, methods=["POST"]),
]
