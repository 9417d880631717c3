"""Watch fan-out: thousands of SSE watchers over many clusters, a steady update rate.

Reports the time from a PUT being acknowledged to each watcher receiving the event (p50/p99
over every delivery), and the service's resident memory per idle watcher.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import statistics
import tempfile
import time
from typing import Any

from bench.loadgen import put_request
from bench.servers import free_port, rss_bytes, running, service_argv


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _watcher(
    port: int, cluster: str, deliveries: list[tuple[int, float]], connected: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(f"GET /v1/clusters/{cluster}/watch HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    first = True
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            # Chunked framing lines and SSE fields arrive interleaved; only ids matter here.
            if line.startswith(b"id: "):
                if first:
                    first = False
                    connected.set()
                    continue
                deliveries.append((int(line[4:]), time.perf_counter()))
    finally:
        writer.close()


async def _writer(
    port: int, clusters: int, rate: float, duration: float, acks: dict[int, float]
) -> int:
    payload = base64.b64encode(os.urandom(512)).decode()
    connections = 32
    interval = connections / rate
    sent = 0

    async def one(slot: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        next_at = time.perf_counter() + slot * interval / connections
        end = time.perf_counter() + duration
        n = slot
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += interval
            n += connections
            body = json.dumps({"data": f"{n:08d}{payload}", "ttl": 1800}).encode()
            sent_at = time.perf_counter()
            writer.write(
                put_request("b", f"/v1/clusters/c{n % clusters}/affiliates/a{n % 50}", body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            reply = json.loads(await reader.readexactly(length))
            # Measured from the send: a write is fanned out before its own ack returns.
            acks[reply["revision"]] = sent_at
            sent += 1
        writer.close()

    await asyncio.gather(*(one(i) for i in range(connections)))
    return sent


async def run(
    watchers: int = 10_000, clusters: int = 1_000, rate: float = 500.0, duration: float = 20.0
) -> dict[str, Any]:
    _raise_fd_limit()
    port = free_port()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(service_argv(f"sqlite:///{tmp}/events.db", port), port, "/readyz") as proc,
    ):
        rss_before = rss_bytes(proc.pid)
        deliveries: list[tuple[int, float]] = []
        events = [asyncio.Event() for _ in range(watchers)]
        started = time.perf_counter()
        tasks = []
        for i in range(watchers):
            tasks.append(
                asyncio.create_task(_watcher(port, f"c{i % clusters}", deliveries, events[i]))
            )
            if i % 200 == 199:
                await asyncio.sleep(0.05)  # don't overrun the accept backlog
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 300)
        connect_seconds = time.perf_counter() - started
        await asyncio.sleep(2)
        rss_idle = rss_bytes(proc.pid)
        acks: dict[int, float] = {}
        sent = await _writer(port, clusters, rate, duration, acks)
        await asyncio.sleep(2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    latencies = sorted(at - acks[rev] for rev, at in deliveries if rev in acks)
    expected = sent * watchers / clusters
    return {
        "watchers": watchers,
        "clusters": clusters,
        "target_rate": rate,
        "updates_sent": sent,
        "achieved_rate": round(sent / duration, 1),
        "deliveries": len(latencies),
        "deliveries_expected": int(expected),
        "fanout_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "fanout_p99_ms": round(latencies[int(0.99 * len(latencies))] * 1000, 2)
        if latencies
        else None,
        "connect_seconds": round(connect_seconds, 1),
        "rss_idle_mb": round(rss_idle / 2**20, 1),
        "rss_per_watcher_kb": round((rss_idle - rss_before) / watchers / 1024, 1),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
