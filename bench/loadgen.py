"""A minimal HTTP/1.1 keep-alive load generator on raw asyncio streams.

httpx costs more CPU per request than the servers under test, which on a 2-core machine would
measure the client; this sends pre-built requests and parses only the status line and the
Content-Length, so the server stays the bottleneck.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50) * 1000, 2),
            "p99_ms": round(self.percentile(99) * 1000, 2),
            "mean_ms": round(statistics.fmean(self.latencies) * 1000, 2) if self.latencies else 0,
        }


def put_request(host: str, path: str, body: bytes) -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def request_maker(host: str, clusters: int = 64) -> Callable[[int], bytes]:
    """PUTs with 1 KiB of data (new each time, so every PUT is a full update), 2 endpoints."""
    payload = base64.b64encode(os.urandom(1024)).decode()
    endpoints = [base64.b64encode(os.urandom(16)).decode() for _ in range(2)]

    def make(n: int) -> bytes:
        body = json.dumps(
            {"data": f"{n:08d}" + payload[8:], "endpoints": endpoints, "ttl": 1800}
        ).encode()
        return put_request(host, f"/v1/clusters/c{n % clusters}/affiliates/a{n % 997}", body)

    return make


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    host: str,
    port: int,
    make_request: Callable[[int], bytes],
    *,
    connections: int,
    duration: float,
    warmup: float = 1.0,
    on_response: Callable[[int, float], None] | None = None,
) -> LoadResult:
    """Closed-loop load: each connection sends the next request when the last answered."""
    latencies: list[float] = []
    counter = 0
    errors = 0
    measuring = False
    stop_at = 0.0

    async def worker() -> None:
        nonlocal counter, errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                counter += 1
                request = make_request(counter)
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                elapsed = time.perf_counter() - started
                if on_response is not None:
                    on_response(status, time.perf_counter())
                if measuring:
                    if 200 <= status < 300:
                        latencies.append(elapsed)
                    else:
                        errors += 1
        finally:
            writer.close()

    stop_at = time.perf_counter() + warmup + duration
    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(warmup)
    measuring = True
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    return LoadResult(len(latencies), errors, time.perf_counter() - began, latencies)
