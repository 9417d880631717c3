"""HttpDiscoveryClient against a real server (core + uvicorn on 127.0.0.1), and connect()."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from ipaddress import IPv4Address

import httpx
import pytest
import uvicorn

from discovery.client import (
    ClientError,
    Deleted,
    RawAffiliate,
    Snapshot,
    Updated,
    WatchEvent,
    connect,
)
from discovery.client import http as client_http
from discovery.client.grpc import GrpcDiscoveryClient
from discovery.client.http import HttpDiscoveryClient
from discovery.core.clock import system_clock
from discovery.settings import Settings
from tests.support.live import LiveServer, live_server

pytestmark = pytest.mark.anyio

TTL = timedelta(minutes=5)
# Talos cluster ids are standard base64; '%' checks that ids are escaped, not passed through.
CLUSTER = "q8/+Zx==%2F"
AFFILIATE = "node/1+2="


@contextlib.asynccontextmanager
async def running(
    settings: Settings | None = None,
) -> AsyncIterator[tuple[LiveServer, HttpDiscoveryClient]]:
    async with live_server(settings) as live:
        client = HttpDiscoveryClient(live.url, timeout=5.0)
        try:
            yield live, client
        finally:
            await client.aclose()


async def take(stream: AsyncIterator[WatchEvent], n: int = 1) -> list[WatchEvent]:
    async with asyncio.timeout(5.0):
        return [await anext(stream) for _ in range(n)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def bounded_shutdown(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # uvicorn's default graceful shutdown waits forever for open responses, and a watch never
    # ends; the real server bounds it (discovery/server.py), and so do these tests.
    monkeypatch.setattr(
        uvicorn, "Config", functools.partial(uvicorn.Config, timeout_graceful_shutdown=1)
    )
    yield


# -- hello ---------------------------------------------------------------------------------


async def test_hello_reports_the_client_ip_and_no_redirect() -> None:
    async with running() as (_, client):
        reply = await client.hello(CLUSTER, "v1.9.0")
    assert reply.client_ip == IPv4Address("127.0.0.1")
    assert reply.redirect is None


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("https://elsewhere.example:3001", "https://elsewhere.example:3001"),
        # The Talos form names no protocol: it keeps the one this client speaks.
        ("elsewhere.example:3001", "http://elsewhere.example:3001"),
    ],
)
async def test_hello_returns_the_redirect_as_a_url(configured: str, expected: str) -> None:
    settings = Settings(rate_limit=0, storage="memory://", redirect_endpoint=configured)
    async with running(settings) as (_, client):
        reply = await client.hello(CLUSTER, "v1.9.0")
    assert reply.redirect == expected


# -- update, list, delete ------------------------------------------------------------------


async def test_update_list_delete_round_trip_ids_with_reserved_characters() -> None:
    async with running() as (live, client):
        await client.update(CLUSTER, AFFILIATE, data=b"sealed", endpoints=[b"e1"], ttl=TTL)
        # Endpoints merge and data=None keeps the data.
        await client.update(CLUSTER, AFFILIATE, data=None, endpoints=[b"e2", b"e1"], ttl=TTL)
        await client.update(CLUSTER, "other", data=b"x", endpoints=[], ttl=TTL)
        listed = sorted(await client.list(CLUSTER), key=lambda a: a.id)
        assert listed == [
            RawAffiliate(id=AFFILIATE, data=b"sealed", endpoints=(b"e1", b"e2")),
            RawAffiliate(id="other", data=b"x", endpoints=()),
        ]
        # The server decoded the ids exactly: the core sees the same strings.
        _, core = live.service.list_affiliates(CLUSTER)
        assert {a.id for a in core} == {AFFILIATE, "other"}

        await client.delete(CLUSTER, AFFILIATE)
        await client.delete(CLUSTER, AFFILIATE)  # idempotent
        assert [a.id for a in await client.list(CLUSTER)] == ["other"]
        assert await client.list("an empty cluster") == []


async def test_ttl_is_sent_in_seconds() -> None:
    async with running() as (live, client):
        await client.update(CLUSTER, AFFILIATE, data=b"d", endpoints=[], ttl=timedelta(seconds=90))
        _, [affiliate] = live.service.list_affiliates(CLUSTER)
    remaining = affiliate.expires_at - system_clock()
    assert timedelta(seconds=85) < remaining <= timedelta(seconds=90)


# -- watch ---------------------------------------------------------------------------------


async def test_watch_snapshot_then_updates_and_deletes_by_other_writers() -> None:
    async with running() as (live, client), HttpDiscoveryClient(live.url) as writer:
        await writer.update(CLUSTER, "before", data=b"b", endpoints=[b"e"], ttl=TTL)
        async with contextlib.aclosing(client.watch(CLUSTER)) as stream:
            [snapshot] = await take(stream)
            assert isinstance(snapshot, Snapshot)
            assert snapshot.affiliates == (RawAffiliate("before", b"b", (b"e",)),)
            assert snapshot.revision == live.service.status().revision

            await writer.update(CLUSTER, AFFILIATE, data=b"one", endpoints=[b"e1"], ttl=TTL)
            await writer.update("another cluster", "x", data=b"x", endpoints=[], ttl=TTL)
            await writer.delete(CLUSTER, "before")
            update, delete = await take(stream, 2)

    assert isinstance(update, Updated)
    assert update.affiliate == RawAffiliate(AFFILIATE, b"one", (b"e1",))
    assert isinstance(delete, Deleted)
    assert delete.affiliate_id == "before"
    assert update.revision is not None and delete.revision is not None
    assert snapshot.revision is not None
    assert snapshot.revision < update.revision < delete.revision


async def test_watch_resumes_with_since_and_yields_only_the_missed_events() -> None:
    async with running() as (_, client), HttpDiscoveryClient(client.endpoint) as writer:
        async with contextlib.aclosing(client.watch(CLUSTER)) as stream:
            await take(stream)
            await writer.update(CLUSTER, "a", data=b"v1", endpoints=[], ttl=TTL)
            [seen] = await take(stream)
        assert isinstance(seen, Updated) and seen.revision is not None

        # While disconnected: two changes and a deletion here, a write elsewhere.
        await writer.update(CLUSTER, "b", data=b"b", endpoints=[], ttl=TTL)
        await writer.update(CLUSTER, "a", data=b"v2", endpoints=[], ttl=TTL)
        await writer.update("elsewhere", "z", data=b"z", endpoints=[], ttl=TTL)
        await writer.delete(CLUSTER, "b")

        async with contextlib.aclosing(client.watch(CLUSTER, since=seen.revision)) as stream:
            missed = await take(stream, 3)
            await writer.update(CLUSTER, "live", data=b"l", endpoints=[], ttl=TTL)
            [after] = await take(stream)

    assert [type(e).__name__ for e in missed] == ["Updated", "Updated", "Deleted"]
    assert [e.affiliate.id for e in missed if isinstance(e, Updated)] == ["b", "a"]
    revisions = [e.revision or 0 for e in missed]
    assert seen.revision < revisions[0] < revisions[1] < revisions[2]
    assert isinstance(after, Updated) and after.affiliate.id == "live"


async def test_watch_raises_retryable_when_the_server_stops(bounded_shutdown: None) -> None:
    server = live_server()
    live = await server.__aenter__()
    stopping: asyncio.Task[bool | None] | None = None
    try:
        async with (
            HttpDiscoveryClient(live.url) as client,
            contextlib.aclosing(client.watch(CLUSTER)) as stream,
        ):
            await take(stream)
            stopping = asyncio.create_task(server.__aexit__(None, None, None))
            with pytest.raises(ClientError) as caught:
                await take(stream)
    finally:
        await (stopping or server.__aexit__(None, None, None))
    assert caught.value.retryable


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


async def test_watch_of_an_invalid_cluster_fails_on_first_next_not_retryable() -> None:
    async with running() as (_, client):
        stream = client.watch("c" * 300)
        with pytest.raises(ClientError, match="cluster ID is too long") as caught:
            await anext(stream)
    assert not caught.value.retryable


# -- errors --------------------------------------------------------------------------------


async def test_too_big_data_is_refused_with_the_servers_message() -> None:
    async with running() as (_, client):
        with pytest.raises(ClientError, match="affiliate data is too big") as caught:
            await client.update(CLUSTER, AFFILIATE, data=b"x" * 4096, endpoints=[], ttl=TTL)
    assert not caught.value.retryable


async def test_rate_limited_calls_are_retryable() -> None:
    settings = Settings(rate_limit=0.001, rate_burst=1, storage="memory://")
    async with running(settings) as (_, client):
        await client.list(CLUSTER)
        with pytest.raises(ClientError, match="rate limit") as caught:
            await client.list(CLUSTER)
    assert caught.value.retryable


async def test_an_unreachable_server_is_retryable() -> None:
    async with HttpDiscoveryClient(f"http://127.0.0.1:{closed_port()}", timeout=2.0) as client:
        with pytest.raises(ClientError) as hello:
            await client.hello(CLUSTER, "v1")
        with pytest.raises(ClientError) as watch:
            await anext(client.watch(CLUSTER))
    assert hello.value.retryable and watch.value.retryable


async def test_calls_after_aclose_fail_not_retryable() -> None:
    client = HttpDiscoveryClient("http://127.0.0.1:1")
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(ClientError, match="closed") as caught:
        await client.list(CLUSTER)
    assert not caught.value.retryable


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
