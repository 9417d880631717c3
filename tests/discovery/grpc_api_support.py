"""Shared by the gRPC API tests: a live server fixture, a stub, and update/list/read calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings, stub

TTL = timedelta(minutes=5)


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


# Registered under the name tests ask for; the function names differ so that importing them
# into a test module does not clash with the parameters that receive them.
@pytest.fixture(name="live")
async def live_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GrpcLive]:
    """In-memory log by default; `@both_logs` runs a test on SQLite too."""
    storage = getattr(request, "param", "memory")
    url = f"sqlite:///{tmp_path}/events.db" if storage == "sqlite" else "memory://"
    async with grpc_live(grpc_settings(storage=url)) as server:
        yield server


both_logs = pytest.mark.parametrize("live", ["memory", "sqlite"], indirect=True)


@pytest.fixture(name="client")
async def client_fixture(live: GrpcLive) -> AsyncIterator[cluster_pb2_grpc.ClusterStub]:
    async with live.channel() as channel:
        yield stub(channel)


async def read(call: grpc.aio.UnaryStreamCall, timeout: float = 5.0) -> pb.WatchResponse:
    async with asyncio.timeout(timeout):
        message = await call.read()
    assert message is not grpc.aio.EOF
    assert isinstance(message, pb.WatchResponse)
    return message
