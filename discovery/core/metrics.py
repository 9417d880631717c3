"""Prometheus metrics: the upstream `discovery_*` families plus our own.

Each service gets its own registry (no global state), so tests can run many side by side.
With several worker processes (`multiprocess_dir`), prometheus-client's multiprocess mode
keeps every value in a file per process under that directory and the registry exposes them
all together: counters and histograms summed, each gauge combined as its `multiprocess_mode`
says. The process, GC and state-at-scrape collectors describe one process, so in that mode
the state is published to gauges instead (`publish_state`, each worker every second).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal

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
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
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


def _state(status: CoreStatus) -> dict[str, float]:
    return {
        "discovery_state_clusters": status.clusters,
        "discovery_state_affiliates": status.affiliates,
        "discovery_state_endpoints": status.endpoints,
        "discovery_state_subscriptions": status.watchers,
        "discovery_log_head": status.revision,
    }


# How each worker's state gauge combines: every worker folds the same log, so the counts are
# the most caught-up worker's; watchers are each worker's own, so they add up. A dead worker's
# "live" values are removed by the supervisor (mark_process_dead).
_STATE_MODES: dict[str, Literal["livemax", "livesum"]] = {
    "discovery_state_clusters": "livemax",
    "discovery_state_affiliates": "livemax",
    "discovery_state_endpoints": "livemax",
    "discovery_state_subscriptions": "livesum",
    "discovery_log_head": "livemax",
}


class _Workers(Collector):
    """Every worker's values from the shared directory, this worker's state made fresh first
    (the others' are at most a publishing interval old)."""

    def __init__(self, path: str, publish: Callable[[], None]) -> None:
        self._files = MultiProcessCollector(None, path=path)  # type: ignore[no-untyped-call]
        self._publish = publish

    def collect(self) -> Iterator[Metric]:
        self._publish()
        files: Iterator[Metric] = self._files.collect()  # type: ignore[no-untyped-call]
        return files


class Metrics:
    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        # `registry` is what /metrics exposes; `r` is where the metrics themselves register:
        # in multiprocess mode nowhere, since the exposed values are read from the files.
        self.registry = CollectorRegistry()
        self._multiprocess = multiprocess_dir is not None
        r: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            self.registry.register(_Workers(multiprocess_dir, self.publish_state))
            self.registry.register(PLATFORM_COLLECTOR)
            r = None
        else:
            # Process and runtime metrics, as upstream exports through the default registry.
            ProcessCollector(registry=r)
            self.registry.register(PLATFORM_COLLECTOR)
            self.registry.register(GC_COLLECTOR)
        self._read_status: Callable[[], CoreStatus] | None = None
        self._state_gauges = {
            name: Gauge(name, name.replace("_", " "), registry=r, multiprocess_mode=mode)
            for name, mode in _STATE_MODES.items()
            if self._multiprocess
        }
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
            "discovery_storage_last_snapshot_size_bytes",
            "Size of the last snapshot",
            registry=r,
            # Whichever worker led when it was written; the snapshot outlives that worker.
            multiprocess_mode="mostrecent",
        )
        self.compacted = Counter(
            "discovery_log_compacted_events", "Events removed by compaction", registry=r
        )
        self.leader = Gauge(
            "discovery_leader",
            "1 when this replica runs GC and snapshots",
            registry=r,
            # One worker of the replica leads; a dead worker's mark goes with it.
            multiprocess_mode="livemax",
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
        """Export the core's status as upstream's state gauges, read at scrape time (or, with
        several workers, whenever `publish_state` runs)."""
        if self._multiprocess:
            self._read_status = read
            return
        self.registry.register(_StateCollector(lambda: _state(read())))

    def publish_state(self) -> None:
        """Write this worker's state gauges to its file (multiprocess mode; else a no-op)."""
        if self._read_status is None:
            return
        for name, value in _state(self._read_status()).items():
            self._state_gauges[name].set(value)
