"""HttpDiscoveryClient: the client contract on a real server, and what only HTTP has."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Address

import httpx
import pytest
import uvicorn

from discovery.client import (
    ClientError,
    Deleted,
    DiscoveryClient,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
    connect,
)
from discovery.client import http as client_http
from discovery.client.grpc import GrpcDiscoveryClient
from discovery.client.http import HttpDiscoveryClient
from discovery.settings import Settings
from tests.discovery.client_contract import DiscoveryClientContract
from tests.discovery.client_harness import (
    CLUSTER,
    Options,
    Serve,
    Served,
    Stoppable,
    closed_port,
)
from tests.support.live import LiveServer, live_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def bounded_shutdown(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # uvicorn's default graceful shutdown waits forever for open responses, and a watch never
    # ends; the real server bounds it (discovery/server.py), and so do these tests.
    monkeypatch.setattr(
        uvicorn, "Config", functools.partial(uvicorn.Config, timeout_graceful_shutdown=1)
    )
    yield


class TestHttpDiscoveryClient(DiscoveryClientContract):
    resumes = True
    revisions = True
    status_names = {
        "invalid": "(HTTP 400)",
        "exhausted": "(HTTP 422)",
        "rate_limited": "(HTTP 429)",
    }

    @pytest.fixture
    def serve(self, bounded_shutdown: None) -> Serve:
        @contextlib.asynccontextmanager
        async def serve_(options: Options) -> AsyncIterator[Served]:
            server = Stoppable(live_server(Settings(**options.settings())))
            live: LiveServer = await server.start()
            served = Served(
                IPv4Address("127.0.0.1"),
                lambda: HttpDiscoveryClient(live.url, timeout=5.0),
                live.service.list_affiliates,
                server.stop,
            )
            try:
                yield served
            finally:
                await served.aclose()
                await server.stop()

        return serve_

    @pytest.fixture
    def unreachable(self) -> DiscoveryClient:
        return HttpDiscoveryClient(f"http://127.0.0.1:{closed_port()}", timeout=2.0)


# -- watch -----------------------------------------------------------------------------------


async def test_a_silent_watch_connection_is_given_up_after_the_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A half-open connection: the response started, then nothing, not even keep-alives.
    monkeypatch.setattr(client_http, "WATCH_READ_TIMEOUT", 0.3)
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        await release.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HttpDiscoveryClient(f"http://127.0.0.1:{port}", timeout=0.1) as client:
            with pytest.raises(ClientError, match="timed out") as caught:
                async with asyncio.timeout(5.0):
                    await anext(client.watch(CLUSTER))
    finally:
        release.set()
        server.close()
        await server.wait_closed()
    assert caught.value.retryable


# -- the SSE reader on exact bytes ---------------------------------------------------------


async def test_sse_parsing_skips_comments_retry_and_unknown_events_and_ends_retryable() -> None:
    body = (
        b"retry: 1000\r\n"
        b'id: 7\r\nevent: snapshot\r\ndata: {"revision":7,\r\ndata: "affiliates":[]}\r\n\r\n'
        b": keepalive\n\n"
        b'id: 8\nevent: something-new\ndata: {"x":1}\n\n'
        b'id: 9\nevent: update\ndata: {"id":"a","data":"ZA==","endpoints":["ZQ=="],'
        b'"expires_at":"2030-01-01T00:00:00Z"}\n\n'
        b'event: delete\ndata: {"id":"a"}\n\n'
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    transport = httpx.MockTransport(handler)
    async with HttpDiscoveryClient("http://test", transport=transport) as client:
        events: list[WatchEvent] = []
        with pytest.raises(ClientError, match="ended") as caught:
            async for event in client.watch("a/b", since=3):
                events.append(event)
    assert caught.value.retryable
    assert events == [
        Snapshot(affiliates=(), revision=7),
        Updated(affiliate=RawAffiliate("a", b"d", (b"e",)), revision=9),
        # A frame without its own id keeps the last one, as the SSE spec says.
        Deleted(affiliate_id="a", revision=9),
    ]
    [request] = seen
    assert request.url.raw_path == b"/v1/clusters/a%2Fb/watch"
    assert request.headers["last-event-id"] == "3"


async def test_a_non_event_stream_answer_is_an_error() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, html="<p>captive portal</p>"))
    async with HttpDiscoveryClient("http://test", transport=transport) as client:
        with pytest.raises(ClientError, match="not an event stream"):
            await anext(client.watch("c"))


# -- connect -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:3001", HttpDiscoveryClient),
        ("HTTPS://discovery.example", HttpDiscoveryClient),
        ("grpc://127.0.0.1:3000", GrpcDiscoveryClient),
        ("grpcs://discovery.talos.dev:443", GrpcDiscoveryClient),
    ],
)
async def test_connect_picks_the_implementation_by_scheme(url: str, kind: type[object]) -> None:
    client = connect(url, timeout=3.0)
    try:
        assert isinstance(client, kind)
        assert client.endpoint == url
    finally:
        await client.aclose()


@pytest.mark.parametrize("url", ["discovery.talos.dev:443", "ftp://host:21", "", "unix:///x"])
def test_connect_refuses_other_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="must start with"):
        connect(url)
