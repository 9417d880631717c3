"""The Talos gRPC Hello call: the client's IP, proxy headers, redirects, version metrics."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import ip_address

import grpc
import pytest

from discovery.proto import cluster_pb2 as pb
from tests.discovery.grpc_api_support import live_fixture  # noqa: F401
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings, stub

pytestmark = pytest.mark.anyio


Metadata = Sequence[tuple[str, str]]


async def hello(live: GrpcLive, metadata: Metadata = (), target: str = "") -> pb.HelloResponse:
    async with grpc.aio.insecure_channel(target or live.target) as channel:
        response: pb.HelloResponse = await stub(channel).Hello(
            pb.HelloRequest(cluster_id="c", client_version="v1.9.0"), metadata=metadata
        )
        return response


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
