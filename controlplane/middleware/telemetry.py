"""Request ids, one structured log line per request, and Prometheus request metrics.

A client that hangs up before its request is read is nobody's bug: it is logged at INFO and
counted with status 499 (nginx's "client closed request"), not as an error with a traceback,
and no answer is attempted on a connection that is gone.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.errors import internal_error_response

logger = logging.getLogger("brik.http")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
UNMATCHED_ROUTE = "<unmatched>"
CLIENT_CLOSED_REQUEST = 499


class RequestMetrics:
    """The HTTP metrics of one app, in that app's own registry (tests build many apps)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("method", "route", "status")
        self.requests = Counter(
            "brik_http_requests_total", "HTTP requests handled.", labels, registry=registry
        )
        self.latency = Histogram(
            "brik_http_request_duration_seconds",
            "Time from request start to the end of the response.",
            labels,
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )


_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path or "/"
    return UNMATCHED_ROUTE


class RequestTelemetryMiddleware:
    """Outermost middleware: assigns the request id and measures everything inside it.

    Labels are bounded: the route *template* (never the raw path), a known method or
    ``OTHER``, and the status code.
    """

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or f"req_{secrets.token_hex(12)}"
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status: int | None = None  # set when the response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["Request-Id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            logger.info("client disconnected", extra={"request_id": request_id})
            status = CLIENT_CLOSED_REQUEST if status is None else status
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request_id})
            if status is not None:
                raise
            await internal_error_response()(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
            route = _route_template(scope)
            status = 500 if status is None else status  # the client got no response at all
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route, str(status)).observe(elapsed)
            logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


def _incoming_request_id(scope: Scope) -> str | None:
    """A caller's own ``Request-Id`` is kept when it is short and plain (so logs can join)."""
    for name, value in scope["headers"]:
        if name == b"request-id":
            text = value.decode("latin-1")
            return text if _CLIENT_REQUEST_ID.match(text) else None
    return None
