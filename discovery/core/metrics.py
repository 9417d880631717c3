"""Prometheus metrics: the upstream `discovery_*` families plus our own.

Each service gets its own registry (no global state), so tests can run many side by side.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from discovery.core.values import CoreStatus

# Distinct client_version label values kept (Talos releases a few minor versions a year).
HELLO_VERSION_LABELS = 64
_VERSION = re.compile(r"^v(\d{1,3})\.(\d{1,3})\.\d+(-.+)?$")


def parse_client_version(version: str) -> str:
    """Upstream's label for a client version: vX.Y, vX.Y-pre, or unknown."""
    match = _VERSION.match(version)
    if match is None:
        return "unknown"
    major, minor, pre = match.groups()
    return f"v{major}.{minor}" + ("-pre" if pre else "")


class _StateCollector(Collector):
    """State gauges computed at scrape time, as upstream does."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in self._read().items():
            yield GaugeMetricFamily(name, name.replace("_", " "), value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Process and runtime metrics, as upstream exports through the default registry.
        ProcessCollector(registry=r)
        r.register(PLATFORM_COLLECTOR)
        r.register(GC_COLLECTOR)
        self._hello_labels: set[str] = set()
        self.hello = Counter(
            "discovery_server_hello_requests",
            "Hello requests by client version",
            ["client_version"],
            registry=r,
        )
        self.gc_runs = Counter("discovery_state_gc_runs", "GC runs", registry=r)
        self.gc_clusters = Counter("discovery_state_gc_clusters", "Clusters removed", registry=r)
        self.gc_affiliates = Counter(
            "discovery_state_gc_affiliates", "Affiliates expired by GC", registry=r
        )
        self.append_seconds = Histogram(
            "discovery_log_append_seconds",
            "Time to durably append one command's events",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.requests = Counter(
            "discovery_requests",
            "Requests by front end, operation and outcome",
            ["api", "operation", "code"],
            registry=r,
        )
        self.rate_limited = Counter(
            "discovery_rate_limited_requests", "Requests refused by the per-IP limit", registry=r
        )
        self.watch_catchups = Counter(
            "discovery_watch_catchups",
            "Times a slow watcher fell back to reading the log",
            registry=r,
        )
        self.snapshots = Counter(
            "discovery_storage_operations",
            "Snapshot operations",
            ["operation", "status"],
            registry=r,
        )
        self.snapshot_bytes = Gauge(
            "discovery_storage_last_snapshot_size_bytes", "Size of the last snapshot", registry=r
        )
        self.compacted = Counter(
            "discovery_log_compacted_events", "Events removed by compaction", registry=r
        )
        self.leader = Gauge(
            "discovery_leader", "1 when this replica runs GC and snapshots", registry=r
        )
        # The gRPC families and labels of go-grpc-middleware's Prometheus provider, which
        # upstream exports, so existing dashboards work unchanged.
        grpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.grpc_started = Counter(
            "grpc_server_started", "RPCs started on the server", grpc_labels, registry=r
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure",
            [*grpc_labels, "grpc_code"],
            registry=r,
        )
        self.grpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC until it completed on the server",
            grpc_labels,
            buckets=(0.01, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

    def count_hello(self, client_version: str) -> None:
        """Count a Hello by upstream's version label; past a bound, new labels count as
        "other", so clients cannot grow the metrics without limit by inventing versions."""
        label = parse_client_version(client_version)
        if label not in self._hello_labels:
            if len(self._hello_labels) >= HELLO_VERSION_LABELS:
                label = "other"
            else:
                self._hello_labels.add(label)
        self.hello.labels(label).inc()

    def watch_status(self, read: Callable[[], CoreStatus]) -> None:
        """Export the core's status as upstream's state gauges, read at scrape time."""

        def gauges() -> dict[str, float]:
            status = read()
            return {
                "discovery_state_clusters": status.clusters,
                "discovery_state_affiliates": status.affiliates,
                "discovery_state_endpoints": status.endpoints,
                "discovery_state_subscriptions": status.watchers,
                "discovery_log_head": status.revision,
            }

        self.registry.register(_StateCollector(gauges))
