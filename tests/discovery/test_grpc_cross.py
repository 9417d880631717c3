"""Both front ends on one core: writes through either are seen by watchers of the other, and
a gRPC watcher that stops reading neither blocks writers nor loses events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import grpc
import httpx
import pytest

from discovery.core.changes import WatchSnapshot
from discovery.proto import cluster_pb2 as pb
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings, stub
from tests.support.sse import SSEEvent, events

pytestmark = pytest.mark.anyio

TTL = timedelta(minutes=5)

# A watcher connection whose HTTP/2 receive window stays small, so a watcher that does not
# read pushes back on the server within a few messages rather than after megabytes.
_SMALL_WINDOW = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextlib.asynccontextmanager
async def http_front(live: GrpcLive) -> AsyncIterator[str]:
    """The HTTP listener of the same runtime (the same core as the gRPC front end): httpx's
    ASGITransport collects a whole response before returning it, so it cannot read an
    endless SSE stream."""
    yield f"http://127.0.0.1:{live.runtime.http_port}"


@pytest.fixture
async def live() -> AsyncIterator[GrpcLive]:
    async with grpc_live() as server:
        yield server


async def take(stream: AsyncIterator[SSEEvent], timeout: float = 5.0) -> SSEEvent:
    async with asyncio.timeout(timeout):
        return await anext(stream)


async def read(call: grpc.aio.UnaryStreamCall, timeout: float = 5.0) -> pb.WatchResponse:
    async with asyncio.timeout(timeout):
        message = await call.read()
    assert isinstance(message, pb.WatchResponse)
    return message


async def test_a_grpc_write_reaches_an_sse_watcher_at_the_same_revision(live: GrpcLive) -> None:
    async with (
        http_front(live) as url,
        httpx.AsyncClient(base_url=url) as http,
        live.channel() as channel,
        http.stream("GET", "/v1/clusters/c/watch") as response,
    ):
        sse = events(response)
        assert (await take(sse)).event == "snapshot"
        client = stub(channel)
        request = pb.AffiliateUpdateRequest(
            cluster_id="c", affiliate_id="a", affiliate_data=b"sealed", affiliate_endpoints=[b"e"]
        )
        request.ttl.FromTimedelta(TTL)
        await client.AffiliateUpdate(request)
        listed = (await http.get("/v1/clusters/c/affiliates")).json()
        update = await take(sse)
        await client.AffiliateDelete(pb.AffiliateDeleteRequest(cluster_id="c", affiliate_id="a"))
        deleted = await take(sse)
    assert update.event == "update" and update.id == listed["revision"]
    assert (update.data["id"], update.data["data"], update.data["endpoints"]) == (
        "a",
        b64(b"sealed"),
        [b64(b"e")],
    )
    assert (deleted.event, deleted.data) == ("delete", {"id": "a"})
    assert deleted.id is not None and update.id is not None and deleted.id > update.id


async def test_an_http_put_reaches_a_grpc_watcher(live: GrpcLive) -> None:
    async with (
        http_front(live) as url,
        httpx.AsyncClient(base_url=url) as http,
        live.channel() as channel,
    ):
        call = stub(channel).Watch(pb.WatchRequest(cluster_id="c/with+slash="))
        assert list((await read(call)).affiliates) == []
        body = {"data": b64(b"sealed"), "endpoints": [b64(b"e1"), b64(b"e2")], "ttl": 60}
        put = await http.put("/v1/clusters/c%2Fwith%2Bslash%3D/affiliates/a", json=body)
        assert put.status_code == 200, put.text
        update = await read(call)
        revision, _ = live.service.list_affiliates("c/with+slash=")
        removed = await http.delete("/v1/clusters/c%2Fwith%2Bslash%3D/affiliates/a")
        deleted = await read(call)
        call.cancel()
    assert put.json()["revision"] == revision
    assert [(a.id, a.data, list(a.endpoints)) for a in update.affiliates] == [
        ("a", b"sealed", [b"e1", b"e2"])
    ]
    assert removed.status_code == 200
    assert deleted.deleted and [a.id for a in deleted.affiliates] == ["a"]


async def test_a_watcher_that_stops_reading_blocks_no_writer_and_loses_nothing() -> None:
    writes, names = 2000, 40
    async with (
        grpc_live(grpc_settings(watch_buffer=8)) as live,
        live.channel(_SMALL_WINDOW) as watch_channel,
        live.channel() as write_channel,
    ):
        call = stub(watch_channel).Watch(pb.WatchRequest(cluster_id="c"))
        state = {a.id: (a.data, list(a.endpoints)) for a in (await read(call)).affiliates}
        client = stub(write_channel)
        # Large messages, so the watcher's HTTP/2 window fills and the server-side stream
        # blocks: the core must then drop its queue and catch up from the log later.
        padding = b"p" * 1900

        async def writer(worker: int) -> None:
            for i in range(worker, writes, 8):
                name = f"a{i % names}"
                if i % 11 == 0:
                    await client.AffiliateDelete(
                        pb.AffiliateDeleteRequest(cluster_id="c", affiliate_id=name)
                    )
                    continue
                request = pb.AffiliateUpdateRequest(
                    cluster_id="c",
                    affiliate_id=name,
                    affiliate_data=b"%d|" % i + padding,
                    affiliate_endpoints=[b"e%d" % (i % 3)],
                )
                request.ttl.FromTimedelta(TTL)
                await client.AffiliateUpdate(request)

        async with asyncio.timeout(30):  # writers complete although nobody reads the watch
            await asyncio.gather(*(writer(w) for w in range(8)))
        expected = {
            a.id: (a.data, list(a.endpoint_blobs())) for a in live.service.list_affiliates("c")[1]
        }
        listed = await client.List(pb.ListRequest(cluster_id="c"))
        assert {a.id: (a.data, list(a.endpoints)) for a in listed.affiliates} == expected

        async with asyncio.timeout(30):
            while state != expected:
                message = await read(call)
                assert len(message.affiliates) == 1
                [affiliate] = message.affiliates
                if message.deleted:
                    state.pop(affiliate.id, None)
                else:
                    state[affiliate.id] = (affiliate.data, list(affiliate.endpoints))
        call.cancel()
        assert live.runtime.metrics.watch_catchups._value.get() >= 1


async def test_a_lagging_watcher_resyncs_by_diff_when_the_log_was_compacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from discovery.grpc import server as grpc_server

    resyncs: list[int] = []
    original = grpc_server._resync

    def counting(known: set[str], snapshot: WatchSnapshot) -> Iterator[bytes]:
        resyncs.append(snapshot.revision)
        return original(known, snapshot)

    monkeypatch.setattr(grpc_server, "_resync", counting)
    async with (
        grpc_live(grpc_settings(watch_buffer=2, retention=0)) as live,
        live.channel(_SMALL_WINDOW) as channel,
    ):
        service, maintenance = live.service, live.runtime.maintenance
        assert maintenance is not None
        for name in ("gone", "stays"):
            await service.update_affiliate(
                "c", name, data=b"d", endpoints=[], ttl_seconds=TTL.total_seconds()
            )
        call = stub(channel).Watch(pb.WatchRequest(cluster_id="c"))
        state = {a.id: a.data for a in (await read(call)).affiliates}
        assert sorted(state) == ["gone", "stays"]
        big = b"x" * 2000
        for i in range(200):  # far more than the window and the queue hold
            await service.update_affiliate(
                "c",
                f"n{i % 5}",
                data=b"%d" % i + big,
                endpoints=[],
                ttl_seconds=TTL.total_seconds(),
            )
        await service.delete_affiliate("c", "gone")
        await maintenance.snapshot()  # compacts the log the watcher would replay
        expected = {a.id: a.data for a in service.list_affiliates("c")[1]}
        async with asyncio.timeout(20):
            while state != expected:
                message = await read(call)
                [affiliate] = message.affiliates
                if message.deleted:
                    state.pop(affiliate.id, None)
                else:
                    state[affiliate.id] = affiliate.data
        call.cancel()
    assert "gone" not in state and resyncs
