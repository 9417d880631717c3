"""Watch fan-out: thousands of SSE or gRPC watchers over many clusters, a steady update rate.

Watchers run in several client processes (bench/fanout_clients.py), the writer in one more, so
no client is the bottleneck; each process reports its CPU time. Reported: every delivery's
time from the PUT being sent to the watcher having the event (p50/p99), delivered against
expected, the service's resident memory per watcher, and how busy the clients were.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fanout_clients import cluster_of, watch_process, write_process
from bench.servers import (
    free_port,
    running,
    service_argv,
    tree_cpu_seconds,
    tree_rss_bytes,
    wait_workers,
)

PROCESSES = 4


def _wait_connected(counter: Any, expected: int, timeout: float) -> float:
    started = time.monotonic()
    while counter.value < expected:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"only {counter.value} of {expected} watchers got their snapshot")
        time.sleep(0.1)
    return time.monotonic() - started


def measure(
    protocol: str, watchers: int, clusters: int, rate: float, duration: float, workers: str
) -> dict[str, Any]:
    http_port, grpc_port = free_port(), free_port()
    ctx = multiprocessing.get_context("spawn")
    names = [f"c{i % clusters}" for i in range(watchers)]
    with tempfile.TemporaryDirectory() as tmp:
        argv = service_argv(
            f"sqlite:///{tmp}/events.db", http_port,
            "--grpc-addr", f"127.0.0.1:{grpc_port}",
            *(("--workers", workers) if workers != "1" else ()),
        )  # fmt: skip
        with running(argv, http_port, "/readyz") as proc:
            wait_workers(http_port, workers)
            rss_before = tree_rss_bytes(proc.pid)
            connected = ctx.Value("i", 0)
            stop = ctx.Event()
            port = http_port if protocol == "sse" else grpc_port
            outs = [os.path.join(tmp, f"watch{i}.json") for i in range(PROCESSES)]
            procs = [
                ctx.Process(
                    target=watch_process,
                    args=(protocol, port, names[i::PROCESSES], connected, stop, outs[i]),
                )
                for i in range(PROCESSES)
            ]
            for p in procs:
                p.start()
            connect_seconds = _wait_connected(connected, watchers, 300)
            time.sleep(2)
            rss_idle = tree_rss_bytes(proc.pid)
            cpu_before = tree_cpu_seconds(proc.pid)
            writer_out = os.path.join(tmp, "writer.json")
            writer = ctx.Process(
                target=write_process, args=(http_port, clusters, rate, duration, writer_out)
            )
            writer.start()
            writer.join()
            time.sleep(2)
            server_cpu = tree_cpu_seconds(proc.pid) - cpu_before
            stop.set()
            for p in procs:
                p.join(60)
        reports = [json.loads(Path(o).read_text()) for o in outs]
        written = json.loads(Path(writer_out).read_text())

    sent = {int(n): at for n, at in written["sent"].items()}
    per_cluster: dict[str, int] = {}
    for name in names:
        per_cluster[name] = per_cluster.get(name, 0) + 1
    expected = sum(per_cluster.get(cluster_of(n, clusters), 0) for n in sent)
    latencies = sorted(at - sent[n] for r in reports for n, at in r["deliveries"] if n in sent)
    window = duration + 2
    client_cpu = sum(r["cpu_seconds"] for r in reports)
    return {
        "protocol": protocol,
        "workers": workers,
        "watchers": watchers,
        "clusters": clusters,
        "target_rate": rate,
        "updates_acknowledged": len(sent),
        "deliveries": len(latencies),
        "deliveries_expected": expected,
        "fanout_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "fanout_p99_ms": (
            round(latencies[int(0.99 * len(latencies))] * 1000, 2) if latencies else None
        ),
        "connect_seconds": round(connect_seconds, 1),
        "rss_idle_mb": round(rss_idle / 2**20, 1),
        "rss_per_watcher_kb": round((rss_idle - rss_before) / watchers / 1024, 1),
        "server_cpu_pct": round(server_cpu / window * 100, 1),
        # Whole-life CPU of the watcher processes (connecting included) over the load window.
        "watch_clients_cpu_pct_of_one_core": round(client_cpu / PROCESSES / window * 100, 1),
        "writer_cpu_seconds": round(written["cpu_seconds"], 1),
    }


async def run(
    watchers: int = 10_000,
    clusters: int = 1_000,
    rate: float = 500.0,
    duration: float = 20.0,
    workers: str = "1",
) -> dict[str, Any]:
    out: dict[str, Any] = {"load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    for protocol in ("sse", "grpc"):
        out[protocol] = await asyncio.to_thread(
            measure, protocol, watchers, clusters, rate, duration, workers
        )
    out["settings"] = {"client_processes": PROCESSES, "writer": "Python, 32 connections, paced"}
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        f"{'proto':<6}{'watchers':>9}{'acked':>7}{'delivered':>11}{'expected':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'KiB/watcher':>12}{'srv cpu%':>9}{'client cpu%':>12}"
    ]
    for protocol in ("sse", "grpc"):
        r = result[protocol]
        rows.append(
            f"{protocol:<6}{r['watchers']:>9}{r['updates_acknowledged']:>7}{r['deliveries']:>11}"
            f"{r['deliveries_expected']:>10}{r['fanout_p50_ms'] or 0:>9.1f}"
            f"{r['fanout_p99_ms'] or 0:>9.1f}{r['rss_per_watcher_kb']:>12.1f}"
            f"{r['server_cpu_pct']:>9.0f}{r['watch_clients_cpu_pct_of_one_core']:>12.0f}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
