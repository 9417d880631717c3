"""The Talos gRPC Watch stream: snapshot, changes, expiry as deletion, shutdown, unsubscribe."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from discovery.core.changes import Change
from discovery.grpc.server import _frames, _render
from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from membership.model import Affiliate
from tests.discovery.grpc_api_support import (  # noqa: F401
    both_logs,
    client_fixture,
    listed,
    live_fixture,
    read,
    update,
)
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings, stub

pytestmark = pytest.mark.anyio


@both_logs
async def test_watch_snapshot_even_when_empty_then_update_then_deletion(
    live: GrpcLive, client: cluster_pb2_grpc.ClusterStub
) -> None:
    call = client.Watch(pb.WatchRequest(cluster_id="c"))
    snapshot = await read(call)
    assert (list(snapshot.affiliates), snapshot.deleted) == ([], False)

    await update(client, "a", b"data", [b"e1"])
    await update(client, "a", None, [b"e2"])
    await update(client, "x", b"other", cluster="elsewhere")  # not this cluster
    await client.AffiliateDelete(pb.AffiliateDeleteRequest(cluster_id="c", affiliate_id="a"))

    created, merged, deleted = await read(call), await read(call), await read(call)
    call.cancel()
    assert not created.deleted and [
        (a.id, a.data, list(a.endpoints)) for a in created.affiliates
    ] == [("a", b"data", [b"e1"])]
    # Each change carries the whole affiliate: data plus every current endpoint.
    assert [(a.id, a.data, list(a.endpoints)) for a in merged.affiliates] == [
        ("a", b"data", [b"e1", b"e2"])
    ]
    assert deleted.deleted and [(a.id, a.data, list(a.endpoints)) for a in deleted.affiliates] == [
        ("a", b"", [])
    ]


async def test_watch_snapshot_is_one_message_with_every_affiliate(
    client: cluster_pb2_grpc.ClusterStub,
) -> None:
    for name in ("a", "b", "c"):
        await update(client, name, name.encode(), [name.encode() * 2])
    call = client.Watch(pb.WatchRequest(cluster_id="c"))
    snapshot = await read(call)
    call.cancel()
    assert not snapshot.deleted
    assert sorted((a.id, a.data, list(a.endpoints)) for a in snapshot.affiliates) == [
        ("a", b"a", [b"aa"]),
        ("b", b"b", [b"bb"]),
        ("c", b"c", [b"cc"]),
    ]


async def test_expiry_is_sent_as_a_deletion() -> None:
    settings = grpc_settings(gc_interval=0.2, heartbeat_interval=0.1)
    async with grpc_live(settings) as live, live.channel() as channel:
        client = stub(channel)
        await update(client, "short", b"d", ttl=timedelta(seconds=1))
        call = client.Watch(pb.WatchRequest(cluster_id="c"))
        assert [a.id for a in (await read(call)).affiliates] == ["short"]
        expired = await read(call, timeout=5.0)
        call.cancel()
        assert expired.deleted and [a.id for a in expired.affiliates] == ["short"]
        assert await listed(client) == {}


async def test_endpoint_only_expiry_is_sent_as_an_update_not_a_deletion() -> None:
    # Upstream sends deleted=true here, and watchers drop a live affiliate (reference §1.3).
    settings = grpc_settings(gc_interval=0.2, heartbeat_interval=0.1)
    async with grpc_live(settings) as live, live.channel() as channel:
        client = stub(channel)
        await update(client, "a", b"d", [b"e1"], ttl=timedelta(minutes=1))
        await update(client, "a", None, [b"e2"], ttl=timedelta(seconds=1))
        call = client.Watch(pb.WatchRequest(cluster_id="c"))
        [snapshot] = (await read(call)).affiliates
        assert list(snapshot.endpoints) == [b"e1", b"e2"]
        change = await read(call, timeout=5.0)
        call.cancel()
        assert not change.deleted
        assert [(a.id, a.data, list(a.endpoints)) for a in change.affiliates] == [
            ("a", b"d", [b"e1"])
        ]


async def test_a_missing_ttl_expires_at_the_next_gc() -> None:
    settings = grpc_settings(gc_interval=0.2, heartbeat_interval=0.1)
    async with grpc_live(settings) as live, live.channel() as channel:
        client = stub(channel)
        await update(client, "a", b"d", ttl=None)
        async with asyncio.timeout(5):
            while await listed(client):
                await asyncio.sleep(0.05)


async def test_server_stop_ends_watch_streams_cleanly() -> None:
    async with grpc_live() as live, live.channel() as channel:
        call = stub(channel).Watch(pb.WatchRequest(cluster_id="c"))
        await read(call)
        await live.runtime.stop()
        async with asyncio.timeout(5):
            assert await call.read() is grpc.aio.EOF
        assert await call.code() is grpc.StatusCode.OK
    assert live.service.status().watchers == 0


def test_a_change_is_rendered_once_for_every_grpc_watcher() -> None:
    from datetime import UTC, datetime

    affiliate = Affiliate("a", b"d", (), datetime(2026, 1, 1, tzinfo=UTC))
    change = Change(7, "a", affiliate)
    first = _render(change)
    assert _render(change) is first and _frames[change] is first
    assert pb.WatchResponse.FromString(first).affiliates[0].id == "a"


async def test_a_cancelled_watch_unsubscribes(
    live: GrpcLive, client: cluster_pb2_grpc.ClusterStub
) -> None:
    calls = [client.Watch(pb.WatchRequest(cluster_id="c")) for _ in range(3)]
    for call in calls:
        await read(call)
    assert live.service.status().watchers == 3
    for call in calls:
        call.cancel()
    async with asyncio.timeout(5):
        while live.service.status().watchers:
            await asyncio.sleep(0.01)


async def test_a_full_cluster_reaches_a_client_with_the_default_receive_limit() -> None:
    # 1,024 affiliates at the size limits: about 4.2 MiB, over grpc's default 4 MiB that
    # every client (Talos included) keeps. Split, the snapshot arrives whole all the same.
    async with grpc_live() as live:
        endpoints = [b"%02d" % i + b"e" * 30 for i in range(64)]
        for i in range(1024):
            await live.service.update_affiliate(
                "full", f"a{i}", data=bytes(2048), endpoints=endpoints, ttl_seconds=600
            )
        async with live.channel() as channel:  # grpc's default limits
            call = stub(channel).Watch(pb.WatchRequest(cluster_id="full"))
            first = await read(call)
            seen = {a.id for a in first.affiliates}
            assert 0 < len(seen) < 1024
            while len(seen) < 1024:
                message = await read(call)
                assert not message.deleted
                seen |= {a.id for a in message.affiliates}
            call.cancel()
        assert seen == {f"a{i}" for i in range(1024)}
