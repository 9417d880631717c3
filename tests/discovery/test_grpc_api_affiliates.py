"""The Talos gRPC AffiliateUpdate, AffiliateDelete and List calls over a real listener."""

from __future__ import annotations

import pytest

from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from tests.discovery.grpc_api_support import (  # noqa: F401
    both_logs,
    client_fixture,
    listed,
    live_fixture,
    update,
)
from tests.support.grpc_live import GrpcLive

pytestmark = pytest.mark.anyio


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
