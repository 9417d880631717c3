"""Reconnect storm: N gRPC Watch streams opened at the same moment, as after a restart.

The streams come from several client processes (so the client is not the limit), each with a
few channels (connections), all starting at one agreed instant. Reports how many streams got
their snapshot, how the others ended, and the seconds from the start until the last snapshot.

    python -m bench.reconnect_storm                 # 10,000 streams
    python -m bench.reconnect_storm --streams 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import grpc

from bench.servers import cpu_seconds, free_port, running
from discovery.proto import cluster_pb2 as pb

WATCH = "/sidero.discovery.server.Cluster/Watch"


def service_argv(storage: str, http_port: int, grpc_port: int) -> list[str]:
    # One client address holds every stream: the per-client watch cap is off, as is the rate
    # limit (each stream costs a token).
    return [
        sys.executable, "-m", "discovery", "--storage", storage,
        "--http-addr", f"127.0.0.1:{http_port}", "--grpc-addr", f"127.0.0.1:{grpc_port}",
        "--metrics-addr", "", "--rate-limit", "0", "--max-watches-per-client", "0",
        "--log-level", "warning",
    ]  # fmt: skip


async def _client(
    port: int, first: int, streams: int, channels: int, start_at: float
) -> dict[str, Any]:
    """Open `streams` watches at `start_at` (time.time()); the last snapshot's offset."""
    opened = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(channels)]
    watch = [
        ch.unary_stream(
            WATCH,
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchResponse.FromString,
        )
        for ch in opened
    ]
    for channel in opened:
        await channel.channel_ready()
    outcomes: Counter[str] = Counter()
    last = 0.0
    calls: list[grpc.aio.UnaryStreamCall[pb.WatchRequest, pb.WatchResponse]] = []

    async def one(n: int) -> None:
        nonlocal last
        call = watch[n % channels](pb.WatchRequest(cluster_id=f"storm{n % 1000}"))
        calls.append(call)
        try:
            if isinstance(await call.read(), pb.WatchResponse):
                outcomes["snapshot"] += 1
                last = max(last, time.time() - start_at)
            else:
                outcomes["ended without a snapshot"] += 1
        except grpc.aio.AioRpcError as exc:
            outcomes[f"{exc.code().name}: {exc.details()}"] += 1

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(one(first + i) for i in range(streams)))
    for call in calls:
        call.cancel()
    for channel in opened:
        await channel.close()
    return {"outcomes": dict(outcomes), "last_snapshot_s": last}


def _client_argv(port: int, first: int, streams: int, channels: int, at: float) -> list[str]:
    numbers = (port, first, streams, channels)
    return [sys.executable, "-m", "bench.reconnect_storm", "--client", *map(str, numbers), repr(at)]


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(
    streams: int = 10_000, processes: int = 4, channels: int = 8, lead: float = 3.0
) -> dict[str, Any]:
    """Start a service, then `processes` clients opening `streams` watches in all at once;
    `lead` seconds let every client connect before the agreed start."""
    _raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        http_port, grpc_port = free_port(), free_port()
        argv = service_argv(f"sqlite:///{tmp}/events.db", http_port, grpc_port)
        with running(argv, http_port, "/readyz") as proc:
            cpu_before = cpu_seconds(proc.pid)
            start_at = time.time() + lead
            share = [streams // processes + (i < streams % processes) for i in range(processes)]
            clients = [
                subprocess.Popen(
                    _client_argv(grpc_port, sum(share[:i]), share[i], channels, start_at),
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(processes)
            ]
            reports = []
            for client in clients:
                out, _ = client.communicate(timeout=300)
                reports.append(json.loads(out))
            cpu_after = cpu_seconds(proc.pid)
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report["outcomes"])
    return {
        "streams": streams,
        "client_processes": processes,
        "channels_per_process": channels,
        "snapshots": outcomes.pop("snapshot", 0),
        "failed": dict(outcomes),
        "seconds_to_last_snapshot": round(max(r["last_snapshot_s"] for r in reports), 2),
        # Opening, snapshots and closing of every stream.
        "service_cpu_s": round(cpu_after - cpu_before, 2),
    }


def table(result: dict[str, Any]) -> str:
    return (
        f"{result['streams']} Watch streams opened at once from {result['client_processes']} "
        f"processes x {result['channels_per_process']} connections: "
        f"{result['snapshots']} snapshots, last after {result['seconds_to_last_snapshot']} s; "
        f"failed {result['failed'] or 0}; service CPU {result['service_cpu_s']} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reconnect_storm")
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--client", nargs=5, metavar=("PORT", "FIRST", "N", "CHANNELS", "AT"))
    args = parser.parse_args()
    if args.client:
        port, first, n, channels, at = args.client
        report = asyncio.run(_client(int(port), int(first), int(n), int(channels), float(at)))
        print(json.dumps(report))
        return
    result = asyncio.run(run(args.streams, args.processes))
    print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
