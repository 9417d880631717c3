"""Durable update throughput over gRPC (Talos' AffiliateUpdate) next to HTTP PUT of the same
shape on the same service process, and next to a no-op grpcio unary handler (bench/noop_grpc).

gRPC load comes from `h2load` (one prebuilt request per process, so 32 processes, each with its
own cluster and affiliate, share the connections), HTTP load from `wrk`; 1 KiB data and 2
endpoints, rate limit off, 32 and 256 connections, alternating rounds of one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import grpc

from bench import servers
from bench.external import Sample, grpc_frame, h2load_grpc, wrk_put
from bench.http_update import CONNECTIONS, body_parts, median_of
from bench.servers import free_port, running
from discovery.proto import cluster_pb2 as pb

UPDATE = "/sidero.discovery.server.Cluster/AffiliateUpdate"
PROCESSES = 32


def service_argv(storage: str, http_port: int, grpc_port: int) -> list[str]:
    return servers.service_argv(storage, http_port, "--grpc-addr", f"127.0.0.1:{grpc_port}")


def requests() -> list[bytes]:
    """One encoded AffiliateUpdateRequest per h2load process: 1 KiB data, 2 endpoints."""
    payload = os.urandom(1024)
    endpoints = [os.urandom(16) for _ in range(2)]
    out = []
    for n in range(PROCESSES):
        request = pb.AffiliateUpdateRequest(
            cluster_id=f"g{n}",
            affiliate_id=f"a{n}",
            affiliate_data=b"%08d" % n + payload[8:],
            affiliate_endpoints=endpoints,
        )
        request.ttl.FromSeconds(1800)
        out.append(request.SerializeToString())
    return out


def _check(port: int, request: bytes) -> None:
    """One call through grpcio first: h2load counts HTTP statuses, not gRPC ones."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary(UPDATE)(request, timeout=10)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _grpc_runs(port: int, pid: int, encoded: list[bytes], duration: float) -> dict[int, Sample]:
    _check(port, encoded[0])
    frames = [grpc_frame(r) for r in encoded]
    h2load_grpc(port, UPDATE, frames, connections=32, duration=1.0, warmup=0.5)
    return {
        c: h2load_grpc(port, UPDATE, frames, connections=c, duration=duration, server=pid)
        for c in CONNECTIONS
    }


async def run(duration: float = 5.0, rounds: int = 3) -> dict[str, Any]:
    load_average = os.getloadavg()
    encoded = requests()
    payload, endpoints = body_parts()
    names = ("noop_grpc", "grpc", "http_put")
    samples: dict[tuple[str, int], list[Sample]] = {(n, c): [] for n in names for c in CONNECTIONS}
    for _ in range(rounds):
        port = free_port()
        noop = subprocess.Popen([sys.executable, "-m", "bench.noop_grpc", str(port)])
        try:
            _wait_port(port, noop)
            for c, s in _grpc_runs(port, noop.pid, encoded, duration).items():
                samples["noop_grpc", c].append(s)
        finally:
            noop.terminate()
            noop.wait(30)
        with tempfile.TemporaryDirectory() as tmp:
            http_port, grpc_port = free_port(), free_port()
            argv = service_argv(f"sqlite:///{tmp}/x.db", http_port, grpc_port)
            with running(argv, http_port, "/readyz") as proc:
                for c, s in _grpc_runs(grpc_port, proc.pid, encoded, duration).items():
                    samples["grpc", c].append(s)
                for c in CONNECTIONS:
                    samples["http_put", c].append(
                        wrk_put(
                            http_port,
                            connections=c,
                            duration=duration,
                            payload=payload,
                            endpoints=endpoints,
                            server=proc.pid,
                        )
                    )

    out: dict[str, Any] = {"load_average_at_start": [round(x, 2) for x in load_average]}
    for (name, c), group in samples.items():
        out.setdefault(name, {})[f"c{c}"] = median_of(group)

    def rps(name: str, c: int) -> float:
        value: float = out[name][f"c{c}"]["throughput_rps"]
        return value or 1.0

    def cpu(name: str, c: int) -> float:
        value: float = out[name][f"c{c}"]["server_cpu_us_per_req"]
        return value or 1.0

    for c in CONNECTIONS:
        out[f"ratio_grpc_vs_http_c{c}"] = round(rps("grpc", c) / rps("http_put", c), 3)
        out[f"ratio_grpc_vs_noop_grpc_c{c}"] = round(rps("grpc", c) / rps("noop_grpc", c), 3)
        # The same comparison by server CPU per call, which other load on the machine moves
        # much less than requests/s (noop CPU / ours: 1.0 means as cheap as the no-op).
        out[f"cpu_ratio_grpc_vs_noop_grpc_c{c}"] = round(cpu("noop_grpc", c) / cpu("grpc", c), 3)
        out[f"cpu_ratio_grpc_vs_http_c{c}"] = round(cpu("http_put", c) / cpu("grpc", c), 3)
    out["settings"] = {
        "duration_s": duration,
        "rounds": rounds,
        "loadgen": f"h2load -t1 -m1 in {PROCESSES} processes; wrk -t1 for HTTP",
    }
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        f"{'target':<11}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'err':>6}{'lg cpu%':>9}"
        f"{'srv cpu%':>9}{'srv us/req':>11}"
    ]
    for name in ("noop_grpc", "grpc", "http_put"):
        for c in CONNECTIONS:
            s = result[name][f"c{c}"]
            rows.append(
                f"{name:<11}{c:>6}{s['throughput_rps']:>10.0f}{s['p50_ms']:>9.2f}"
                f"{s['p99_ms']:>9.2f}{s['errors']:>6.0f}{s['loadgen_cpu_pct']:>9.0f}"
                f"{s['server_cpu_pct']:>9.0f}{s['server_cpu_us_per_req']:>11.0f}"
            )
    for c in CONNECTIONS:
        rows.append(
            f"gRPC / HTTP PUT at {c}: {result[f'ratio_grpc_vs_http_c{c}']}"
            f" (by CPU {result[f'cpu_ratio_grpc_vs_http_c{c}']})"
            f"   gRPC / no-op grpcio: {result[f'ratio_grpc_vs_noop_grpc_c{c}']}"
            f" (by CPU {result[f'cpu_ratio_grpc_vs_noop_grpc_c{c}']})"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    outcome = asyncio.run(run())
    print(table(outcome))
    print(json.dumps(outcome, indent=2))
