"""Durable update throughput: PUT /affiliates against a no-op FastAPI route and raw ASGI.

All three run on the same uvicorn settings, measured in alternating rounds of one run, so the
ratios hold on a noisy shared machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import tempfile
from collections.abc import Callable
from typing import Any

from bench.loadgen import put_request, run_load
from bench.servers import free_port, running, service_argv, uvicorn_argv

CLUSTERS = 64


def request_maker(host: str) -> Callable[[int], bytes]:
    """1 KiB of data (new each time, so every PUT is a full update) and 2 endpoints."""
    payload = base64.b64encode(os.urandom(1024)).decode()
    endpoints = [base64.b64encode(os.urandom(16)).decode() for _ in range(2)]

    def make(n: int) -> bytes:
        body = json.dumps(
            {"data": f"{n:08d}" + payload[8:], "endpoints": endpoints, "ttl": 1800}
        ).encode()
        return put_request(host, f"/v1/clusters/c{n % CLUSTERS}/affiliates/a{n % 997}", body)

    return make


async def _measure(
    argv: list[str], port: int, ready: str, duration: float, connections: int
) -> dict[str, float]:
    with running(argv, port, ready):
        result = await run_load(
            "127.0.0.1",
            port,
            request_maker(f"127.0.0.1:{port}"),
            connections=connections,
            duration=duration,
        )
    return result.summary()


async def run(duration: float = 5.0, connections: int = 32, rounds: int = 3) -> dict[str, Any]:
    """Median of `rounds` alternating runs per target; ratios against the no-op route."""
    samples: dict[str, list[dict[str, float]]] = {"raw_asgi": [], "noop_fastapi": [], "put": []}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            targets = {
                "raw_asgi": (uvicorn_argv("bench.noop_app:raw_app", port), "/"),
                "noop_fastapi": (uvicorn_argv("bench.noop_app:fastapi_app", port), "/docs"),
                "put": (service_argv(f"sqlite:///{tmp}/events.db", port), "/readyz"),
            }
            for name, (argv, ready) in targets.items():
                samples[name].append(await _measure(argv, port, ready, duration, connections))

    def median(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    out: dict[str, Any] = {
        name: {key: median(name, key) for key in ("throughput_rps", "p50_ms", "p99_ms", "errors")}
        for name in samples
    }
    out["ratio_put_vs_noop"] = round(
        median("put", "throughput_rps") / median("noop_fastapi", "throughput_rps"), 3
    )
    out["ratio_put_vs_raw"] = round(
        median("put", "throughput_rps") / median("raw_asgi", "throughput_rps"), 3
    )
    out["settings"] = {"duration_s": duration, "connections": connections, "rounds": rounds}
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
