"""Signed writes over the Talos gRPC API (metadata), and side by side with HTTP; the
attacker hammering a locked cluster from one address while a member on another is served."""

from __future__ import annotations

import re
from datetime import timedelta

import grpc
import httpx
import pytest

from discovery.client import ClientError
from discovery.client.grpc import GrpcDiscoveryClient
from discovery.client.http import HttpDiscoveryClient
from discovery.proto import cluster_pb2 as pb
from tests.discovery.signing_support import LOCKED, OPEN, member, revocation, stranger
from tests.support.grpc_live import grpc_live, grpc_settings, stub
from tests.support.live import live_server

pytestmark = pytest.mark.anyio
TTL = timedelta(minutes=5)


async def test_grpc_signed_writes_follow_the_same_rules() -> None:
    a, b = member(), member()
    async with grpc_live() as live:
        url = f"grpc://{live.target}"
        async with (
            GrpcDiscoveryClient(url, signer=a) as node_a,
            GrpcDiscoveryClient(url, signer=b) as node_b,
            GrpcDiscoveryClient(url) as talos,
        ):
            await node_a.update(LOCKED, a.node_id, data=b"a", endpoints=[b"e"], ttl=TTL)
            await node_a.update(LOCKED, a.node_id, data=None, endpoints=[b"f"], ttl=TTL)
            await node_b.update(LOCKED, b.node_id, data=b"b", endpoints=[], ttl=TTL)
            expected = re.escape("cluster is locked: writes must be signed by a member node")
            with pytest.raises(ClientError, match=expected + r".*UNAUTHENTICATED"):
                await talos.update(LOCKED, a.node_id, data=b"x", endpoints=[], ttl=TTL)
            with pytest.raises(ClientError, match=r"UNAUTHENTICATED"):
                await talos.delete(LOCKED, a.node_id)
            with pytest.raises(ClientError, match=r"own affiliate.*PERMISSION_DENIED"):
                await node_b.update(LOCKED, a.node_id, data=b"x", endpoints=[], ttl=TTL)
            # Written over gRPC, read and deleted over HTTP with the same key: one format.
            async with HttpDiscoveryClient(
                f"http://127.0.0.1:{live.runtime.http_port}", signer=a
            ) as over_http:
                assert {x.id for x in await over_http.list(LOCKED)} == {a.node_id, b.node_id}
                await over_http.delete(LOCKED, a.node_id)
            node_key, signature = revocation(b)
            await live.service.revoke_node(LOCKED, node_key, signature)
            with pytest.raises(ClientError, match=r"revoked.*PERMISSION_DENIED"):
                await node_b.update(LOCKED, b.node_id, data=b"b", endpoints=[], ttl=TTL)
            assert await talos.list(LOCKED) == []
            # An open cluster: Talos writers unsigned, a bound record protected.
            agent = stranger()
            async with GrpcDiscoveryClient(url, signer=agent) as ours:
                await ours.update(OPEN, agent.node_id, data=b"o", endpoints=[], ttl=TTL)
                await talos.update(OPEN, "talos", data=b"t", endpoints=[], ttl=TTL)
                with pytest.raises(ClientError, match=r"bound to a node key.*UNAUTHENTICATED"):
                    await talos.delete(OPEN, agent.node_id)
                await ours.delete(OPEN, agent.node_id)
            assert [x.id for x in await talos.list(OPEN)] == ["talos"]


async def test_malformed_grpc_signatures_are_unauthenticated() -> None:
    a = member()
    async with grpc_live() as live, live.channel() as channel:
        request = pb.AffiliateUpdateRequest(cluster_id=LOCKED, affiliate_id=a.node_id)
        for metadata in (
            (("signature", "ks=:AAAA:"),),
            (("signature-input", "ks=garbage"), ("signature", "ks=:AAAA:")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub(channel).AffiliateUpdate(request, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_attacker_cannot_crowd_out_members() -> None:
    """The attack the issue describes (filling the cluster) fails at once, and the rate limit
    keeps it from starving a member who comes from another address."""
    settings = grpc_settings(rate_limit=5, rate_burst=10)
    a = member()
    async with live_server(settings) as live:
        async with HttpDiscoveryClient(live.url) as attacker:
            for i in range(40):
                with pytest.raises(ClientError, match=r"HTTP 4(01|29)"):
                    await attacker.update(LOCKED, f"junk{i}", data=b"x", endpoints=[], ttl=TTL)
        other_address = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with HttpDiscoveryClient(live.url, signer=a, transport=other_address) as node:
            await node.update(LOCKED, a.node_id, data=b"a", endpoints=[], ttl=TTL)
            assert [x.id for x in await node.list(LOCKED)] == [a.node_id]
