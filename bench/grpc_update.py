"""Durable update throughput over gRPC (Talos' AffiliateUpdate) next to HTTP PUT of the same
shape, against one real `discovery-service` process (upstream's BenchmarkViaClient: 1 KiB
data, 2 endpoints, rate limit off).

Both load generators are closed-loop, one in-flight call per connection, with pre-encoded
requests, so on a small machine the server rather than the client is the bottleneck.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import grpc

from bench.http_update import request_maker
from bench.loadgen import LoadResult, run_load
from bench.servers import free_port, running
from discovery.proto import cluster_pb2 as pb

CLUSTERS = 64
AFFILIATES = 997
UPDATE = "/sidero.discovery.server.Cluster/AffiliateUpdate"


def service_argv(storage: str, http_port: int, grpc_port: int) -> list[str]:
    # Warnings only: the gRPC front end logs every call at info, as upstream does, while the
    # HTTP front end has no access log; at info level the comparison would measure logging.
    return [
        sys.executable, "-m", "discovery", "--storage", storage,
        "--http-addr", f"127.0.0.1:{http_port}", "--grpc-addr", f"127.0.0.1:{grpc_port}",
        "--metrics-addr", "", "--rate-limit", "0", "--log-level", "warning",
    ]  # fmt: skip


def grpc_request_maker() -> Callable[[int], bytes]:
    """The shape of bench.http_update's PUT: 1 KiB of data, new each time, and 2 endpoints."""
    payload = os.urandom(1024)
    endpoints = [os.urandom(16) for _ in range(2)]

    def make(n: int) -> bytes:
        request = pb.AffiliateUpdateRequest(
            cluster_id=f"c{n % CLUSTERS}",
            affiliate_id=f"a{n % AFFILIATES}",
            affiliate_data=b"%08d" % n + payload[8:],
            affiliate_endpoints=endpoints,
        )
        request.ttl.FromSeconds(1800)
        return request.SerializeToString()

    return make


async def grpc_load(
    target: str,
    make_request: Callable[[int], bytes],
    *,
    connections: int,
    duration: float,
    warmup: float = 1.0,
) -> LoadResult:
    """Closed-loop AffiliateUpdate load, one connection (HTTP/2) per worker."""
    latencies: list[float] = []
    counter = errors = 0
    measuring = False
    # A local subchannel pool per channel: otherwise grpc shares one connection among them.
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]

    async def worker(channel: grpc.aio.Channel) -> None:
        nonlocal counter, errors
        update = channel.unary_unary(UPDATE)  # bytes in, bytes out
        while time.perf_counter() < stop_at:
            counter += 1
            request = make_request(counter)
            started = time.perf_counter()
            try:
                await update(request, timeout=30)
                ok = True
            except grpc.aio.AioRpcError:
                ok = False
            elapsed = time.perf_counter() - started
            if measuring:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1

    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        stop_at = time.perf_counter() + warmup + duration
        tasks = [asyncio.create_task(worker(c)) for c in channels]
        await asyncio.sleep(warmup)
        measuring = True
        began = time.perf_counter()
        await asyncio.gather(*tasks)
        return LoadResult(len(latencies), errors, time.perf_counter() - began, latencies)
    finally:
        await asyncio.gather(*(c.close() for c in channels))


async def run(duration: float = 5.0, concurrency: int = 32) -> dict[str, Any]:
    """gRPC AffiliateUpdate and HTTP PUT, `concurrency` connections each, on one service."""
    with tempfile.TemporaryDirectory() as tmp:
        http_port, grpc_port = free_port(), free_port()
        argv = service_argv(f"sqlite:///{tmp}/x.db", http_port, grpc_port)
        with running(argv, http_port, "/readyz"):
            via_grpc = await grpc_load(
                f"127.0.0.1:{grpc_port}",
                grpc_request_maker(),
                connections=concurrency,
                duration=duration,
            )
            via_http = await run_load(
                "127.0.0.1",
                http_port,
                request_maker(f"127.0.0.1:{http_port}"),
                connections=concurrency,
                duration=duration,
            )
    grpc_summary, http_summary = via_grpc.summary(), via_http.summary()
    return {
        "grpc": grpc_summary,
        "http": http_summary,
        "ratio_grpc_vs_http": round(
            grpc_summary["throughput_rps"] / (http_summary["throughput_rps"] or 1.0), 3
        ),
        "settings": {"duration_s": duration, "concurrency": concurrency},
    }


def _table(result: dict[str, Any]) -> str:
    rows = [f"{'api':<6}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"]
    for api in ("grpc", "http"):
        s = result[api]
        rows.append(
            f"{api:<6}{s['throughput_rps']:>10.1f}{s['p50_ms']:>10.2f}"
            f"{s['p99_ms']:>10.2f}{s['errors']:>8.0f}"
        )
    rows.append(f"gRPC / HTTP throughput: {result['ratio_grpc_vs_http']}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table(asyncio.run(run())))
