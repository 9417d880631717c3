"""Durable update throughput: PUT /affiliates next to a no-op FastAPI route and raw ASGI.

Driven by `wrk` (bench/external.py), one load-generator thread, at 32 and 256 connections;
PUTs cycle over 100 clusters x 100 affiliates with 1 KiB of data and 2 endpoints (upstream's
BenchmarkViaClient shape), rate limit off. The three targets run on the same uvicorn settings
in alternating rounds of one run, so the ratios hold on a noisy shared machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import tempfile
from typing import Any

from bench.external import Sample, wrk_put
from bench.servers import free_port, running, service_argv, uvicorn_argv

CONNECTIONS = (32, 256)


def body_parts() -> tuple[str, tuple[str, str]]:
    """1 KiB of data and two 16-byte endpoints, base64 (random once per run)."""
    payload = base64.b64encode(os.urandom(1024)).decode()
    ep = [base64.b64encode(os.urandom(16)).decode() for _ in range(2)]
    return payload, (ep[0], ep[1])


def median_of(samples: list[Sample]) -> dict[str, float]:
    rows = [s.as_dict() for s in samples]
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def measure(
    port: int, pid: int, payload: str, endpoints: tuple[str, str], duration: float
) -> dict[int, Sample]:
    """One warm-up second, then one wrk run per connection count."""
    wrk_put(port, connections=32, duration=1.0, payload=payload, endpoints=endpoints)
    return {
        c: wrk_put(
            port,
            connections=c,
            duration=duration,
            payload=payload,
            endpoints=endpoints,
            server=pid,
        )
        for c in CONNECTIONS
    }


async def run(duration: float = 5.0, rounds: int = 3) -> dict[str, Any]:
    """Median of `rounds` alternating rounds per target and connection count."""
    load_average = os.getloadavg()
    payload, endpoints = body_parts()
    names = ("raw_asgi", "noop_fastapi", "put")
    samples: dict[tuple[str, int], list[Sample]] = {(n, c): [] for n in names for c in CONNECTIONS}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            targets = {
                "raw_asgi": (uvicorn_argv("bench.noop_app:raw_app", port), "/"),
                "noop_fastapi": (uvicorn_argv("bench.noop_app:fastapi_app", port), "/docs"),
                "put": (service_argv(f"sqlite:///{tmp}/events.db", port), "/readyz"),
            }
            for name, (argv, ready) in targets.items():
                with running(argv, port, ready) as proc:
                    for c, sample in measure(port, proc.pid, payload, endpoints, duration).items():
                        samples[name, c].append(sample)

    out: dict[str, Any] = {"load_average_at_start": [round(x, 2) for x in load_average]}
    for (name, c), group in samples.items():
        out.setdefault(name, {})[f"c{c}"] = median_of(group)

    def rps(name: str, c: int) -> float:
        value: float = out[name][f"c{c}"]["throughput_rps"]
        return value or 1.0

    for c in CONNECTIONS:
        out[f"ratio_put_vs_noop_c{c}"] = round(rps("put", c) / rps("noop_fastapi", c), 3)
        out[f"ratio_put_vs_raw_c{c}"] = round(rps("put", c) / rps("raw_asgi", c), 3)
    out["put_scaling_c256_vs_c32"] = round(rps("put", 256) / rps("put", 32), 3)
    # CPU per request is the machine-load-proof comparison (see bench/external.Sample).
    for c in CONNECTIONS:
        out[f"cpu_ratio_noop_vs_put_c{c}"] = round(
            out["noop_fastapi"][f"c{c}"]["server_cpu_us_per_req"]
            / (out["put"][f"c{c}"]["server_cpu_us_per_req"] or 1.0),
            3,
        )
    out["settings"] = {
        "duration_s": duration,
        "rounds": rounds,
        "loadgen": "wrk -t1 --latency, Lua-prebuilt PUTs over 100 clusters x 100 affiliates",
    }
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        f"{'target':<14}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'err':>6}{'lg cpu%':>9}"
        f"{'srv cpu%':>9}{'srv us/req':>11}"
    ]
    for name in ("raw_asgi", "noop_fastapi", "put"):
        for c in CONNECTIONS:
            s = result[name][f"c{c}"]
            rows.append(
                f"{name:<14}{c:>6}{s['throughput_rps']:>10.0f}{s['p50_ms']:>9.2f}"
                f"{s['p99_ms']:>9.2f}{s['errors']:>6.0f}{s['loadgen_cpu_pct']:>9.0f}"
                f"{s['server_cpu_pct']:>9.0f}{s['server_cpu_us_per_req']:>11.0f}"
            )
    for c in CONNECTIONS:
        rows.append(
            f"PUT / no-op FastAPI at {c}: {result[f'ratio_put_vs_noop_c{c}']}"
            f"   PUT / raw ASGI: {result[f'ratio_put_vs_raw_c{c}']}"
        )
    rows.append(f"PUT at 256 / PUT at 32: {result['put_scaling_c256_vs_c32']}")
    rows.append(
        "no-op FastAPI CPU per request / PUT CPU per request (32, 256): "
        + ", ".join(str(result[f"cpu_ratio_noop_vs_put_c{c}"]) for c in CONNECTIONS)
    )
    return "\n".join(rows)


if __name__ == "__main__":
    outcome = asyncio.run(run())
    print(table(outcome))
    print(json.dumps(outcome, indent=2))
