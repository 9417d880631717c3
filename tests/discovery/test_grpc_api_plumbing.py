"""gRPC plumbing: storage outage, unexpected errors, call metrics and logs, binding."""

from __future__ import annotations

import logging

import grpc
import pytest

from discovery.grpc.server import bind_address
from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from membership.model import Affiliate
from tests.discovery.grpc_api_support import (  # noqa: F401
    client_fixture,
    listed,
    live_fixture,
    update,
)
from tests.support.grpc_live import GrpcLive, grpc_settings

pytestmark = pytest.mark.anyio


async def test_storage_outage_is_unavailable(
    live: GrpcLive, client: cluster_pb2_grpc.ClusterStub
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(live.service.health, "reads_ok", False)
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
