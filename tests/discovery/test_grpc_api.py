"""The Talos gRPC API over a real listener: Hello, updates, delete, list, watch, expiry."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path

import grpc
import pytest

from discovery.core.changes import Change
from discovery.grpc.server import _frames, _render, bind_address
from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from membership.model import Affiliate
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings, stub

pytestmark = pytest.mark.anyio

TTL = timedelta(minutes=5)
Metadata = Sequence[tuple[str, str]]


async def hello(live: GrpcLive, metadata: Metadata = (), target: str = "") -> pb.HelloResponse:
    async with grpc.aio.insecure_channel(target or live.target) as channel:
        response: pb.HelloResponse = await stub(channel).Hello(
            pb.HelloRequest(cluster_id="c", client_version="v1.9.0"), metadata=metadata
        )
        return response


async def update(
    client: cluster_pb2_grpc.ClusterStub,
    affiliate: str,
    data: bytes | None = None,
    endpoints: Sequence[bytes] = (),
    ttl: timedelta | None = TTL,
    cluster: str = "c",
) -> None:
    request = pb.AffiliateUpdateRequest(
        cluster_id=cluster, affiliate_id=affiliate, affiliate_endpoints=endpoints
    )
    if data is not None:
        request.affiliate_data = data
    if ttl is not None:
        request.ttl.FromTimedelta(ttl)
    await client.AffiliateUpdate(request)


async def listed(
    client: cluster_pb2_grpc.ClusterStub, cluster: str = "c"
) -> dict[str, pb.Affiliate]:
    response = await client.List(pb.ListRequest(cluster_id=cluster))
    return {a.id: a for a in response.affiliates}


@pytest.fixture
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GrpcLive]:
    """In-memory log by default; `@both_logs` runs a test on SQLite too."""
    storage = getattr(request, "param", "memory")
    url = f"sqlite:///{tmp_path}/events.db" if storage == "sqlite" else "memory://"
    async with grpc_live(grpc_settings(storage=url)) as server:
        yield server


both_logs = pytest.mark.parametrize("live", ["memory", "sqlite"], indirect=True)


@pytest.fixture
async def client(live: GrpcLive) -> AsyncIterator[cluster_pb2_grpc.ClusterStub]:
    async with live.channel() as channel:
        yield stub(channel)


# -- Hello -----------------------------------------------------------------------------------


async def test_hello_reports_the_peer_ip_in_netip_binary_form(live: GrpcLive) -> None:
    response = await hello(live)
    assert response.client_ip == bytes([127, 0, 0, 1])
    assert not response.HasField("redirect")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_hello_on_a_dual_stack_listener_unmaps_ipv4_and_keeps_ipv6() -> None:
    async with grpc_live(grpc_settings(grpc_addr=":0")) as live:
        via_v4 = await hello(live, target=f"127.0.0.1:{live.port}")
        via_v6 = await hello(live, target=f"[::1]:{live.port}")
    assert via_v4.client_ip == bytes([127, 0, 0, 1])
    assert via_v6.client_ip == ip_address("::1").packed and len(via_v6.client_ip) == 16


@pytest.mark.parametrize(
    ("trust", "metadata", "expected"),
    [
        ({"trust_x_real_ip": True}, [("x-real-ip", "1.2.3.4")], "1.2.3.4"),
        ({"trust_x_real_ip": True}, [("x-real-ip", "2001:db8::7")], "2001:db8::7"),
        ({"trust_x_real_ip": False}, [("x-real-ip", "1.2.3.4")], "127.0.0.1"),
        (
            {"trust_x_forwarded_for": True},
            [("x-forwarded-for", "5.6.7.8, 10.0.0.1")],
            "5.6.7.8",
        ),
        ({"trust_x_forwarded_for": False}, [("x-forwarded-for", "5.6.7.8")], "127.0.0.1"),
        (
            {"trust_x_real_ip": True, "trust_x_forwarded_for": True},
            [("x-forwarded-for", "5.6.7.8"), ("x-real-ip", "1.2.3.4")],
            "1.2.3.4",
        ),
        ({"trust_x_real_ip": True}, [("x-real-ip", "not an ip")], "127.0.0.1"),
    ],
)
async def test_hello_trusts_proxy_headers_only_when_told(
    trust: dict[str, bool], metadata: Metadata, expected: str
) -> None:
    async with grpc_live(grpc_settings(**trust)) as live:
        response = await hello(live, metadata)
    assert response.client_ip == ip_address(expected).packed


async def test_hello_with_client_ip_reporting_disabled_sends_none() -> None:
    async with grpc_live(grpc_settings(disable_client_ip=True)) as live:
        response = await hello(live)
    assert response.client_ip == b""


async def test_hello_redirects_every_client_when_configured() -> None:
    async with grpc_live(grpc_settings(redirect_endpoint="other.example:443")) as live:
        response = await hello(live)
    assert response.HasField("redirect")
    assert response.redirect.endpoint == "other.example:443"


async def test_hello_counts_client_versions(live: GrpcLive) -> None:
    await hello(live)
    value = live.runtime.metrics.registry.get_sample_value(
        "discovery_server_hello_requests_total", {"client_version": "v1.9"}
    )
    assert value == 1


# -- AffiliateUpdate, Delete, List -----------------------------------------------------------


@both_logs
async def test_update_merges_endpoints_and_replaces_data(
    live: GrpcLive, client: cluster_pb2_grpc.ClusterStub
) -> None:
    await update(client, "a", b"v1", [b"e1"])
    await update(client, "a", None, [b"e2", b"e1"])  # endpoints only: data stays
    state = await listed(client)
    assert (state["a"].data, list(state["a"].endpoints)) == (b"v1", [b"e1", b"e2"])

    await update(client, "a", b"", [])  # empty data counts as missing, as upstream
    assert (await listed(client))["a"].data == b"v1"
    await update(client, "a", b"v2", [])
    state = await listed(client)
    assert (state["a"].data, list(state["a"].endpoints)) == (b"v2", [b"e1", b"e2"])


async def test_endpoint_only_update_creates_an_affiliate_with_empty_data(
    client: cluster_pb2_grpc.ClusterStub,
) -> None:
    await update(client, "harvested", None, [b"e"])
    state = await listed(client)
    assert (state["harvested"].data, list(state["harvested"].endpoints)) == (b"", [b"e"])


async def test_delete_is_idempotent(client: cluster_pb2_grpc.ClusterStub) -> None:
    request = pb.AffiliateDeleteRequest(cluster_id="c", affiliate_id="a")
    await client.AffiliateDelete(request)  # missing: fine
    await update(client, "a", b"d")
    await update(client, "b", b"d")
    await client.AffiliateDelete(request)
    await client.AffiliateDelete(request)
    assert list(await listed(client)) == ["b"]


async def test_list_is_per_cluster(client: cluster_pb2_grpc.ClusterStub) -> None:
    assert await listed(client) == {}
    await update(client, "a", b"1", [b"e"])
    await update(client, "b", b"2")
    await update(client, "x", b"3", cluster="other")
    state = await listed(client)
    assert {k: (v.data, list(v.endpoints)) for k, v in state.items()} == {
        "a": (b"1", [b"e"]),
        "b": (b"2", []),
    }
    assert list(await listed(client, "other")) == ["x"]


# -- Watch -----------------------------------------------------------------------------------


async def read(call: grpc.aio.UnaryStreamCall, timeout: float = 5.0) -> pb.WatchResponse:
    async with asyncio.timeout(timeout):
        message = await call.read()
    assert message is not grpc.aio.EOF
    assert isinstance(message, pb.WatchResponse)
    return message


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


# -- Plumbing: errors, recovery, metrics, logs -----------------------------------------------


async def test_storage_outage_is_unavailable(
    live: GrpcLive, client: cluster_pb2_grpc.ClusterStub
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(live.service, "_storage_ok", False)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.List(pb.ListRequest(cluster_id="c"))
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_an_unexpected_exception_is_internal_and_the_server_keeps_serving(
    live: GrpcLive,
    client: cluster_pb2_grpc.ClusterStub,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(cluster_id: str) -> tuple[int, list[Affiliate]]:
        raise RuntimeError("bug")

    with monkeypatch.context() as patch:
        patch.setattr(live.service, "list_affiliates", broken)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.List(pb.ListRequest(cluster_id="c"))
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.INTERNAL,
        "internal error",
    )
    assert "grpc panic" in caplog.messages
    assert await listed(client) == {}


async def test_calls_are_counted_and_logged(
    live: GrpcLive, client: cluster_pb2_grpc.ClusterStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "discovery.grpc")
    await update(client, "a", b"d")
    with pytest.raises(grpc.aio.AioRpcError):
        await client.List(pb.ListRequest(cluster_id=""))
    sample = live.runtime.metrics.registry.get_sample_value
    labels = {"grpc_type": "unary", "grpc_service": "sidero.discovery.server.Cluster"}
    assert (
        sample(
            "grpc_server_handled_total",
            {**labels, "grpc_method": "AffiliateUpdate", "grpc_code": "OK"},
        )
        == 1
    )
    assert (
        sample(
            "grpc_server_handled_total",
            {**labels, "grpc_method": "List", "grpc_code": "INVALID_ARGUMENT"},
        )
        == 1
    )
    assert sample("grpc_server_started_total", {**labels, "grpc_method": "List"}) == 1
    [record] = [r for r in caplog.records if r.getMessage().endswith("/AffiliateUpdate")]
    assert record.__dict__["cluster_id"] == "c" and record.__dict__["affiliate_id"] == "a"
    assert record.__dict__["code"] == "OK" and record.__dict__["peer.address"].startswith(
        "127.0.0.1:"
    )
    [failed] = [r for r in caplog.records if r.getMessage().endswith("/List")]
    assert (
        failed.levelno == logging.WARNING
        and failed.__dict__["error"] == "cluster ID can't be empty"
    )


@pytest.mark.parametrize(
    ("addr", "expected"),
    [(":3000", "[::]:3000"), ("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:5", "[::1]:5")],
)
def test_bind_address(addr: str, expected: str) -> None:
    assert bind_address(addr) == expected


async def test_a_port_in_use_fails_to_start(live: GrpcLive) -> None:
    from discovery.grpc.server import start_grpc_server
    from discovery.startup import StartupError

    taken = grpc_settings(grpc_addr=f"127.0.0.1:{live.port}")
    with pytest.raises(StartupError):
        await start_grpc_server(live.service, taken, live.runtime.metrics)


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
