"""What a worker tells Prometheus: deliveries by provider and outcome, provider latency,
retries and jobs in progress. Served on ``BRIK_WORKER_METRICS_PORT`` when it is set (the API's
``/metrics`` adds the queue depth, which it reads from Redis at scrape time)."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


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

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose the metrics on ``host:port`` (a thread), until :meth:`stop`."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        self._server: WSGIServer | None = server

    def stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None
