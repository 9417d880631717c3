"""The client side of the fan-out benchmark: watchers (SSE or gRPC) and the paced writer, each
run in a process of its own so no client shares a core's worth of Python with another.

Every update carries its sequence number in the first 8 characters of its base64 data (6
bytes once decoded), so a watcher on either protocol can tell which update it received; times
are `time.monotonic()`, which on Linux is one clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import time
from multiprocessing.synchronize import Event as StopEvent
from typing import Any

from bench.loadgen import put_request

# One gRPC channel (one HTTP/2 connection) carries this many Watch streams.
_STREAMS_PER_CHANNEL = 100


def sequence_of(data: bytes) -> int | None:
    """The update's sequence number from its decoded data, None for data not ours."""
    digits = base64.b64encode(data[:6])
    return int(digits) if digits.isdigit() else None


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _report(out: str, payload: dict[str, Any]) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    payload["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    with open(out, "w") as f:
        json.dump(payload, f)


# -- SSE ---------------------------------------------------------------------------------------


async def _sse_watcher(port: int, cluster: str, got: list[tuple[int, float]], ready: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(f"GET /v1/clusters/{cluster}/watch HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    try:
        while line := await reader.readline():
            if line.startswith(b"event: snapshot"):
                ready()
            elif line.startswith(b'data: {"id"') and b'"data":"' in line:
                digits = line.split(b'"data":"', 1)[1][:8]
                if digits.isdigit():
                    got.append((int(digits), time.monotonic()))
    finally:
        writer.close()


# -- gRPC --------------------------------------------------------------------------------------


async def _grpc_channel_watchers(
    port: int, clusters: list[str], got: list[tuple[int, float]], ready: Any
) -> None:
    import grpc

    from discovery.proto import cluster_pb2 as pb
    from discovery.proto import cluster_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = pb_grpc.ClusterStub(channel)  # type: ignore[no-untyped-call]

        async def one(cluster: str) -> None:
            first = True
            async for response in stub.Watch(pb.WatchRequest(cluster_id=cluster)):
                if first:
                    first = False
                    ready()
                    continue
                if response.deleted:
                    continue
                at = time.monotonic()
                for affiliate in response.affiliates:
                    n = sequence_of(affiliate.data)
                    if n is not None:
                        got.append((n, at))

        await asyncio.gather(*(one(c) for c in clusters), return_exceptions=True)


# -- a watcher process -------------------------------------------------------------------------


def watch_process(
    protocol: str, port: int, clusters: list[str], connected: Any, stop: StopEvent, out: str
) -> None:
    """Run one watcher per entry of `clusters` until `stop` is set; `connected` counts snapshots."""
    _raise_fd_limit()
    got: list[tuple[int, float]] = []

    def ready() -> None:
        with connected.get_lock():
            connected.value += 1

    async def main() -> None:
        if protocol == "sse":
            tasks = []
            for i, cluster in enumerate(clusters):
                tasks.append(asyncio.create_task(_sse_watcher(port, cluster, got, ready)))
                if i % 200 == 199:
                    await asyncio.sleep(0.05)  # don't overrun the accept backlog
        else:
            groups = [
                clusters[i : i + _STREAMS_PER_CHANNEL]
                for i in range(0, len(clusters), _STREAMS_PER_CHANNEL)
            ]
            tasks = [
                asyncio.create_task(_grpc_channel_watchers(port, g, got, ready)) for g in groups
            ]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    _report(out, {"deliveries": got})


# -- the writer process ------------------------------------------------------------------------


def write_process(port: int, clusters: int, rate: float, duration: float, out: str) -> None:
    """PUTs at `rate` per second over 32 keep-alive connections, each to a random cluster."""
    payload = base64.b64encode(os.urandom(512)).decode()
    connections = 32
    sent: dict[int, float] = {}

    async def one(slot: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = connections / rate
        next_at = time.monotonic() + slot * interval / connections
        end = time.monotonic() + duration
        n = slot
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            n += connections
            body = json.dumps({"data": f"{n:08d}{payload}", "ttl": 1800}).encode()
            path = f"/v1/clusters/{cluster_of(n, clusters)}/affiliates/a{n % 50}"
            at = time.monotonic()
            writer.write(put_request("b", path, body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if head.startswith(b"HTTP/1.1 200"):
                sent[n] = at
        writer.close()

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(connections)))

    asyncio.run(main())
    _report(out, {"sent": sent})


def cluster_of(n: int, clusters: int) -> str:
    """The cluster the writer sends update `n` to (the watchers' side of the same rule)."""
    return f"c{n * 7919 % clusters}"
