"""gRPC watch fan-out: thousands of Talos Watch streams held by client processes of their own,
a steady rate of AffiliateUpdates spread over many clusters.

Reports every delivery's latency from the update being sent to the watcher receiving it (the
update's sequence number travels in its data; all processes share the machine's clock), how
many deliveries were expected, the service's memory per idle stream, and how busy the clients
were, so a reader can tell when they, not the service, were the limit.

    python -m bench.grpc_fanout                     # 10,000 streams, 1,000 clusters, 500/s
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import IO, Any

import grpc

from bench.servers import cpu_seconds, free_port, rss_bytes, running
from discovery.proto import cluster_pb2 as pb

SERVICE = "/sidero.discovery.server.Cluster/"
_SEQ = 10  # leading digits of an update's data: its sequence number


def service_argv(storage: str, http_port: int, grpc_port: int) -> list[str]:
    # Every stream and write comes from one address: its per-client caps are off.
    return [
        sys.executable, "-m", "discovery", "--storage", storage,
        "--http-addr", f"127.0.0.1:{http_port}", "--grpc-addr", f"127.0.0.1:{grpc_port}",
        "--metrics-addr", "", "--rate-limit", "0", "--max-watches-per-client", "0",
        "--max-clusters-per-client", "0", "--max-affiliates-per-client", "0",
        "--log-level", "warning",
    ]  # fmt: skip


async def _watch_client(port: int, first: int, streams: int, clusters: int) -> None:
    """Client process: hold `streams` watches, say "ready" once each has its snapshot, record
    (sequence, time) of every later message until stdin closes, then print them as JSON."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(8)]
    watch = [ch.unary_stream(SERVICE + "Watch") for ch in channels]
    deliveries: list[tuple[int, float]] = []
    outcomes: Counter[str] = Counter()
    ready = asyncio.Event()
    pending = streams

    async def one(n: int) -> None:
        nonlocal pending
        request = pb.WatchRequest(cluster_id=f"f{n % clusters}").SerializeToString()
        snapshot = True
        try:
            async for raw in watch[n % len(watch)](request):
                if snapshot:
                    snapshot = False
                    pending -= 1
                    if pending == 0:
                        ready.set()
                    continue
                received = time.time()
                for affiliate in pb.WatchResponse.FromString(raw).affiliates:
                    deliveries.append((int(affiliate.data[:_SEQ]), received))
        except grpc.aio.AioRpcError as exc:
            outcomes[exc.code().name] += 1

    tasks = [asyncio.create_task(one(first + i)) for i in range(streams)]
    await ready.wait()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"deliveries": deliveries, "failed": dict(outcomes)}))


async def _writer(
    port: int, clusters: int, rate: float, duration: float, sent: dict[int, float]
) -> None:
    payload = os.urandom(512)
    workers = 32
    interval = workers / rate
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        update = channel.unary_unary(SERVICE + "AffiliateUpdate")

        async def worker(slot: int) -> None:
            next_at = time.monotonic() + slot * interval / workers
            end = time.monotonic() + duration
            n = slot
            while next_at < end:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                request = pb.AffiliateUpdateRequest(
                    cluster_id=f"f{n % clusters}",
                    affiliate_id=f"a{n % 50}",
                    affiliate_data=b"%0*d" % (_SEQ, n) + payload,
                )
                request.ttl.FromSeconds(1800)
                sent[n] = time.time()
                await update(request.SerializeToString(), timeout=30)
                n += workers

        await asyncio.gather(*(worker(i) for i in range(workers)))


def _client_argv(port: int, first: int, streams: int, clusters: int) -> list[str]:
    numbers = (port, first, streams, clusters)
    return [sys.executable, "-m", "bench.grpc_fanout", "--client", *map(str, numbers)]


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _read_line(stream: IO[str] | None) -> str:
    assert stream is not None
    return stream.readline().strip()


async def run(
    watchers: int = 10_000,
    clusters: int = 1_000,
    rate: float = 500.0,
    duration: float = 20.0,
    processes: int = 4,
) -> dict[str, Any]:
    _raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        http_port, grpc_port = free_port(), free_port()
        argv = service_argv(f"sqlite:///{tmp}/events.db", http_port, grpc_port)
        with running(argv, http_port, "/readyz") as proc:
            rss_before = rss_bytes(proc.pid)
            share = [watchers // processes + (i < watchers % processes) for i in range(processes)]
            started = time.monotonic()
            clients = [
                subprocess.Popen(
                    _client_argv(grpc_port, sum(share[:i]), share[i], clusters),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(processes)
            ]
            try:
                for client in clients:
                    if (line := _read_line(client.stdout)) != "ready":
                        raise RuntimeError(f"a watch client failed: {line!r}")
                connect_seconds = time.monotonic() - started
                await asyncio.sleep(2)
                rss_idle = rss_bytes(proc.pid)
                sent: dict[int, float] = {}
                cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
                await _writer(grpc_port, clusters, rate, duration, sent)
                await asyncio.sleep(2)
                busy = cpu_seconds(proc.pid) - cpu_before
                service_cpu = busy / (time.monotonic() - wall_before)
                reports, client_cpu = [], 0.0
                for client in clients:
                    assert client.stdin is not None
                    client.stdin.close()
                    reports.append(json.loads(_read_line(client.stdout)))
                    _, _, usage = os.wait4(client.pid, 0)
                    client_cpu += usage.ru_utime + usage.ru_stime
                    client.returncode = 0  # reaped by wait4, which also gave its CPU time
                client_wall = time.monotonic() - started
            except BaseException:
                for client in clients:
                    if client.returncode is None:
                        client.kill()
                        client.wait()
                raise

    latencies: list[float] = sorted(
        at - sent[n] for r in reports for n, at in r["deliveries"] if n in sent
    )
    failed: Counter[str] = Counter()
    for report in reports:
        failed.update(report["failed"])
    # Stream n watches cluster n % clusters; update n goes to cluster n % clusters.
    per_cluster = Counter(n % clusters for n in range(watchers))
    expected = sum(per_cluster[n % clusters] for n in sent)

    def ms(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {
        "watchers": watchers,
        "clusters": clusters,
        "client_processes": processes,
        "target_rate": rate,
        "updates_sent": len(sent),
        "deliveries": len(latencies),
        "deliveries_expected": expected,
        "failed_streams": dict(failed),
        "fanout_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "fanout_p99_ms": ms(0.99),
        "connect_seconds": round(connect_seconds, 1),
        "rss_per_watcher_kb": round((rss_idle - rss_before) / watchers / 1024, 1),
        "service_cpu_pct_while_writing": round(service_cpu * 100, 1),
        "client_cpu_pct_per_process": round(client_cpu / client_wall / processes * 100, 1),
    }


def table(result: dict[str, Any]) -> str:
    return (
        f"{result['watchers']} gRPC watches over {result['clusters']} clusters, "
        f"{result['updates_sent']} updates at {result['target_rate']:g}/s: "
        f"{result['deliveries']} of {result['deliveries_expected']} deliveries, "
        f"p50 {result['fanout_p50_ms']} ms, p99 {result['fanout_p99_ms']} ms; "
        f"{result['rss_per_watcher_kb']} KiB per watch; service CPU "
        f"{result['service_cpu_pct_while_writing']} %, each client "
        f"{result['client_cpu_pct_per_process']} %; connected in {result['connect_seconds']} s"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        port, first, streams, clusters = map(int, sys.argv[2:6])
        asyncio.run(_watch_client(port, first, streams, clusters))
    else:
        outcome = asyncio.run(run())
        print(table(outcome))
        print(json.dumps(outcome, indent=2))
