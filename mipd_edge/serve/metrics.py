"""The server's Prometheus metrics, in a registry of its own (one per app, so that two apps in
one process, as in the tests, never share counters).

| name | type | labels |
|:---|:---|:---|
| ``mipd_edge_requests_total`` | counter | route, status |
| ``mipd_edge_request_seconds`` | histogram | route |
| ``mipd_edge_batch_size`` | histogram | |
| ``mipd_edge_batch_seconds`` | histogram | |
| ``mipd_edge_queue_depth`` | gauge | |
| ``mipd_edge_errors_total`` | counter | type |
| ``mipd_edge_model_info`` | info | bundle, task, backend, precision |
"""

from __future__ import annotations

from typing import Callable, Mapping

from ..errors import require

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    def __init__(self, model: Mapping[str, str], queue_depth: Callable[[], float]):
        prometheus = require("prometheus_client", "serve", "The server's metrics")
        self._prometheus = prometheus
        self.registry = prometheus.CollectorRegistry()
        r = self.registry
        self.requests = prometheus.Counter("mipd_edge_requests", "HTTP requests by route and status code",
                                           ("route", "status"), registry=r)
        self.latency = prometheus.Histogram("mipd_edge_request_seconds", "Request latency by route", ("route",),
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = prometheus.Histogram("mipd_edge_batch_size", "Images per batch run on the model",
                                               buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = prometheus.Histogram("mipd_edge_batch_seconds", "Seconds per batch run on the model",
                                                  buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = prometheus.Gauge("mipd_edge_queue_depth", "Images waiting or running", registry=r)
        self.queue_depth.set_function(queue_depth)
        self.errors = prometheus.Counter("mipd_edge_errors", "Requests answered with an error, by error type",
                                         ("type",), registry=r)
        prometheus.Info("mipd_edge_model", "The bundle served", registry=r).info(dict(model))

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return self._prometheus.generate_latest(self.registry), self._prometheus.CONTENT_TYPE_LATEST
