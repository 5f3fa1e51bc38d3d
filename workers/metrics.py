"""What a worker tells Prometheus and its orchestrator.

Metrics: deliveries by provider and outcome, provider latency, retries, jobs in progress,
analytics events loaded and the buffer's backlog, and whether Redis is reachable (the API's
``/metrics`` adds the queue depth, which it reads from Redis at scrape time). Served on
``BRIK_WORKER_METRICS_PORT`` when it is set, together with ``/healthz`` (the process is alive)
and ``/readyz`` (503 while the worker waits for Redis).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

StartResponse = Callable[..., Any]


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.deliveries = Counter(
            "brik_deliveries_total",
            "Deliveries that reached an outcome, by provider and outcome.",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "brik_delivery_retries_total",
            "Deliveries scheduled for another attempt, by provider.",
            ["provider"],
            registry=self.registry,
        )
        self.send_seconds = Histogram(
            "brik_provider_send_seconds",
            "Time to send one batch group to a provider and get every answer.",
            ["provider"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.jobs_in_progress = Gauge(
            "brik_delivery_jobs_in_progress",
            "Delivery jobs running in this worker.",
            registry=self.registry,
        )
        self.redis_up = Gauge(
            "brik_worker_redis_connected",
            "1 while the worker reaches Redis; 0 while it waits for Redis to come back.",
            registry=self.registry,
        )
        self.heartbeat = Gauge(
            "brik_worker_heartbeat_timestamp_seconds",
            "When this worker last ran a heartbeat job (unix time): its job loop takes work. "
            "One a minute goes through the queue to whichever worker is free (and each runs one "
            "at start-up): the newest across workers is what tells the fleet works.",
            registry=self.registry,
        )
        self.analytics_events = Counter(
            "brik_analytics_events_loaded_total",
            "Analytics events taken from the buffer, by outcome: inserted, duplicate (sent "
            "again, counted once) or dropped (their project was deleted).",
            ["outcome"],
            registry=self.registry,
        )
        self.analytics_backlog = Gauge(
            "brik_analytics_backlog_bytes",
            "Analytics events waiting in Redis to be loaded (JSON bytes), as this worker last "
            "saw it; ingestion refuses past BRIK_ANALYTICS_BUFFER_MAX_BYTES.",
            registry=self.registry,
        )
        self.waiting_for_redis_since: float | None = None
        self._server: WSGIServer | None = None

    def waiting_for_redis(self, since: float) -> None:
        self.waiting_for_redis_since = since
        self.redis_up.set(0)

    def redis_connected(self) -> None:
        self.waiting_for_redis_since = None
        self.redis_up.set(1)

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of ``/readyz``."""
        if self.waiting_for_redis_since is not None:
            return 503, {"status": "waiting", "waiting_for": "redis",
                         "since": self.waiting_for_redis_since}  # fmt: skip
        return 200, {"status": "ok"}

    def wsgi_app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            status, body = (200, {"status": "ok"}) if path == "/healthz" else self.readiness()
            start_response(
                f"{status} {'OK' if status == 200 else 'Service Unavailable'}",
                [("Content-Type", "application/json")],
            )
            return [json.dumps(body).encode()]
        return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose metrics and probes on ``host:port`` (a thread), until :meth:`stop`."""
        self._metrics_app = make_wsgi_app(self.registry)
        server = make_server(
            host, port, self.wsgi_app, ThreadingWSGIServer, handler_class=_SilentHandler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None
