"""Watches that cost far more than their token: per-client and total caps on open streams,
over SSE and gRPC alike, and a lifetime. The abuser is refused at once; a client on another
address (127.0.0.2) keeps being served within a second throughout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest

from discovery.proto import cluster_pb2 as pb
from tests.support.grpc_live import stub
from tests.support.process import ServiceProcess, free_port
from tests.support.sse import events

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CAP = 20


@pytest.fixture
def service() -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        "memory://",
        grpc_port=free_port(),
        extra=["--rate-limit", "0", "--max-watches-per-client", str(CAP)],
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def _bystander(url: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, base_url=url, timeout=5) as http:
        yield http


async def _served_within_a_second(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    put = await http.put("/v1/clusters/other/affiliates/a", json={"data": "ZA==", "ttl": 60})
    assert put.status_code == 200
    async with http.stream("GET", "/v1/clusters/other/watch") as response:
        assert response.status_code == 200
        first = await anext(events(response))
        assert first.event == "snapshot"
    assert time.monotonic() - started < 1.0


async def test_sse_watches_past_the_cap_are_refused(service: ServiceProcess) -> None:
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=service.url, timeout=httpx.Timeout(5, read=60))
        )
        for _ in range(CAP):
            response = await stack.enter_async_context(http.stream("GET", "/v1/clusters/c/watch"))
            assert response.status_code == 200
        started = time.monotonic()
        refused = await http.get("/v1/clusters/c/watch")
        assert refused.status_code == 429
        assert "too many open watches" in refused.json()["error"]["message"]
        assert time.monotonic() - started < 1.0
        async with _bystander(service.url) as other:
            await _served_within_a_second(other)
    # Closed streams give their slots back.
    async with (
        httpx.AsyncClient(base_url=service.url, timeout=5) as http,
        http.stream("GET", "/v1/clusters/c/watch") as response,
    ):
        assert response.status_code == 200


async def test_grpc_watches_past_the_cap_are_refused(service: ServiceProcess) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        client = stub(channel)
        calls = [client.Watch(pb.WatchRequest(cluster_id="c")) for _ in range(CAP)]
        for call in calls:
            assert await call.read() is not grpc.aio.EOF
        extra = client.Watch(pb.WatchRequest(cluster_id="c"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await extra.read()
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        async with _bystander(service.url) as other:
            await _served_within_a_second(other)
        for call in calls:
            call.cancel()


async def test_a_watch_ends_after_its_lifetime_and_resumes() -> None:
    proc = ServiceProcess("memory://", extra=["--rate-limit", "0", "--watch-lifetime", "1"])
    proc.start()
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
            started = time.monotonic()
            async with http.stream("GET", "/v1/clusters/c/watch") as response:
                async for _ in events(response):
                    pass  # the snapshot, then the server ends the stream
            assert 0.9 < time.monotonic() - started < 5
            await asyncio.sleep(0)
    finally:
        assert proc.stop() == 0
