"""Bad input over gRPC: exact status codes and upstream messages, nothing stored, server
keeps serving; malformed protobuf; the per-IP rate limit delays and then refuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from google.protobuf.message import Message

from discovery.core.service import DiscoveryService
from discovery.proto import cluster_pb2 as pb
from discovery.proto import cluster_pb2_grpc
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings, stub

pytestmark = pytest.mark.anyio

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
TTL = timedelta(minutes=5)
SERVICE = "/sidero.discovery.server.Cluster/"
CLUSTER_UNPRINTABLE = "cluster ID contains control or non-printable characters"
AFFILIATE_UNPRINTABLE = "affiliate ID contains control or non-printable characters"


def upd(
    cluster: str = "c",
    affiliate: str = "new",
    data: bytes | None = b"d",
    endpoints: tuple[bytes, ...] = (),
    ttl: timedelta = TTL,
) -> pb.AffiliateUpdateRequest:
    request = pb.AffiliateUpdateRequest(
        cluster_id=cluster, affiliate_id=affiliate, affiliate_endpoints=endpoints
    )
    if data is not None:
        request.affiliate_data = data
    request.ttl.FromTimedelta(ttl)
    return request


@dataclass(frozen=True)
class Case:
    method: str
    request: Message
    code: grpc.StatusCode | None  # None: accepted
    message: str = ""


CASES: dict[str, Case] = {
    "hello: empty cluster": Case("Hello", pb.HelloRequest(), INVALID, "cluster ID can't be empty"),
    "hello: long cluster": Case(
        "Hello", pb.HelloRequest(cluster_id="x" * 257), INVALID, "cluster ID is too long"
    ),
    "hello: cluster of 256 bytes": Case("Hello", pb.HelloRequest(cluster_id="x" * 256), None),
    "update: empty cluster": Case(
        "AffiliateUpdate", upd(cluster=""), INVALID, "cluster ID can't be empty"
    ),
    "update: long cluster": Case(
        "AffiliateUpdate", upd(cluster="é" * 129), INVALID, "cluster ID is too long"
    ),
    "update: empty cluster and affiliate": Case(
        "AffiliateUpdate", upd(cluster="", affiliate=""), INVALID, "cluster ID can't be empty"
    ),
    "hello: NUL in the cluster": Case(
        "Hello", pb.HelloRequest(cluster_id="c\x00"), INVALID, CLUSTER_UNPRINTABLE
    ),
    "update: NUL in the cluster": Case(
        "AffiliateUpdate", upd(cluster="c\x00x"), INVALID, CLUSTER_UNPRINTABLE
    ),
    "update: control character in the affiliate": Case(
        "AffiliateUpdate", upd(affiliate="a\x1b[31m"), INVALID, AFFILIATE_UNPRINTABLE
    ),
    "delete: NUL in the affiliate": Case(
        "AffiliateDelete",
        pb.AffiliateDeleteRequest(cluster_id="c", affiliate_id="\x00"),
        INVALID,
        AFFILIATE_UNPRINTABLE,
    ),
    "update: empty affiliate": Case(
        "AffiliateUpdate", upd(affiliate=""), INVALID, "affiliate ID can't be empty"
    ),
    "update: long affiliate": Case(
        "AffiliateUpdate", upd(affiliate="a" * 257), INVALID, "affiliate ID is too long"
    ),
    "update: data 2049 bytes": Case(
        "AffiliateUpdate", upd(data=b"d" * 2049), INVALID, "affiliate data is too big"
    ),
    "update: data 2048 bytes": Case("AffiliateUpdate", upd(data=b"d" * 2048), None),
    "update: endpoint 33 bytes": Case(
        "AffiliateUpdate",
        upd(endpoints=(b"ok", b"e" * 33)),
        INVALID,
        "affiliate endpoint is too big",
    ),
    "update: endpoint 32 bytes": Case("AffiliateUpdate", upd(endpoints=(b"e" * 32,)), None),
    "update: ttl 31 min": Case(
        "AffiliateUpdate", upd(ttl=timedelta(minutes=31)), INVALID, "ttl is too large"
    ),
    "update: ttl 30 min": Case("AffiliateUpdate", upd(ttl=timedelta(minutes=30)), None),
    "update: ttl negative": Case("AffiliateUpdate", upd(ttl=timedelta(seconds=-5)), None),
    "update: 65th endpoint": Case(
        "AffiliateUpdate",
        upd(affiliate="full", data=None, endpoints=(b"one-more",)),
        EXHAUSTED,
        "too many endpoints in the affiliate",
    ),
    "update: 64 known endpoints again": Case(
        "AffiliateUpdate", upd(affiliate="full", endpoints=(b"0", b"63")), None
    ),
    "update: 65 endpoints on a new affiliate": Case(
        "AffiliateUpdate",
        upd(endpoints=tuple(str(i).encode() for i in range(65))),
        EXHAUSTED,
        "too many endpoints in the affiliate",
    ),
    "update: 1025th affiliate": Case(
        "AffiliateUpdate",
        upd(cluster="crowded", affiliate="one-more"),
        EXHAUSTED,
        "too many affiliates in the cluster",
    ),
    "update: existing affiliate of a full cluster": Case(
        "AffiliateUpdate", upd(cluster="crowded", affiliate="a0", data=b"new"), None
    ),
    "delete: empty cluster": Case(
        "AffiliateDelete",
        pb.AffiliateDeleteRequest(affiliate_id="a"),
        INVALID,
        "cluster ID can't be empty",
    ),
    "delete: empty affiliate": Case(
        "AffiliateDelete",
        pb.AffiliateDeleteRequest(cluster_id="c"),
        INVALID,
        "affiliate ID can't be empty",
    ),
    "delete: long affiliate": Case(
        "AffiliateDelete",
        pb.AffiliateDeleteRequest(cluster_id="c", affiliate_id="a" * 257),
        INVALID,
        "affiliate ID is too long",
    ),
    "list: empty cluster": Case("List", pb.ListRequest(), INVALID, "cluster ID can't be empty"),
    "list: long cluster": Case(
        "List", pb.ListRequest(cluster_id="x" * 257), INVALID, "cluster ID is too long"
    ),
    "watch: empty cluster": Case("Watch", pb.WatchRequest(), INVALID, "cluster ID can't be empty"),
    "watch: long cluster": Case(
        "Watch", pb.WatchRequest(cluster_id="x" * 257), INVALID, "cluster ID is too long"
    ),
}


async def _seed(service: DiscoveryService) -> None:
    # Through the core: 1024 gRPC calls would only slow the suite down.
    endpoints = [str(i).encode() for i in range(64)]
    await service.update_affiliate(
        "c", "full", data=b"d", endpoints=endpoints, ttl_seconds=TTL.total_seconds()
    )
    for i in range(1024):
        await service.update_affiliate(
            "crowded", f"a{i}", data=b"d", endpoints=[], ttl_seconds=TTL.total_seconds()
        )


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def seeded() -> AsyncIterator[GrpcLive]:
    # One server for the whole matrix: accepted cases only touch their own affiliates.
    async with grpc_live() as live:
        await _seed(live.service)
        yield live


def _state(live: GrpcLive) -> dict[str, object]:
    return {
        cluster: {
            a.id: (a.data, a.endpoint_blobs()) for a in live.service.list_affiliates(cluster)[1]
        }
        for cluster in ("c", "crowded", "x" * 256)
    }


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def _call(channel: grpc.aio.Channel, case: Case) -> None:
    path = SERVICE + case.method
    if case.method == "Watch":
        call = channel.unary_stream(path, request_serializer=_serialize)(case.request)
        async for _ in call:
            break  # accepted: the snapshot arrived
        call.cancel()
        return
    unary = channel.unary_unary(path, request_serializer=_serialize)
    await unary(case.request)


@pytest.mark.parametrize("name", list(CASES))
async def test_validation_matrix(seeded: GrpcLive, name: str) -> None:
    case = CASES[name]
    before = _state(seeded)
    async with seeded.channel() as channel:
        if case.code is None:
            await _call(channel, case)
            return
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _call(channel, case)
        assert (caught.value.code(), caught.value.details()) == (case.code, case.message)
        # Nothing stored (not even a new empty affiliate), and the server keeps serving.
        assert _state(seeded) == before
        await stub(channel).Hello(pb.HelloRequest(cluster_id="c"))


@pytest.mark.parametrize("method", ["Hello", "AffiliateUpdate", "AffiliateDelete", "List"])
async def test_malformed_protobuf_is_an_error_and_the_server_keeps_serving(
    seeded: GrpcLive, method: str
) -> None:
    async with seeded.channel() as channel:
        raw = channel.unary_unary(SERVICE + method, request_serializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(b"\x0a\xff\xff\xff\xff\x0f")  # field 1, length far past the end
        assert caught.value.code() in (grpc.StatusCode.INTERNAL, INVALID)
        response = await stub(channel).Hello(pb.HelloRequest(cluster_id="c"))
        assert response.client_ip == bytes([127, 0, 0, 1])


async def test_malformed_watch_request_is_an_error(seeded: GrpcLive) -> None:
    async with seeded.channel() as channel:
        call = channel.unary_stream(SERVICE + "Watch", request_serializer=None)(b"\xff")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        assert caught.value.code() in (grpc.StatusCode.INTERNAL, INVALID)


async def test_unknown_method_is_unimplemented(seeded: GrpcLive) -> None:
    async with seeded.channel() as channel:
        raw = channel.unary_unary(SERVICE + "Nope", request_serializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(b"")
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


# -- rate limit ------------------------------------------------------------------------------

BURST = 5

Call = Callable[[cluster_pb2_grpc.ClusterStub, float | None], Awaitable[object]]


async def _hello(client: cluster_pb2_grpc.ClusterStub, timeout: float | None) -> object:
    return await client.Hello(pb.HelloRequest(cluster_id="c"), timeout=timeout)


async def _watch(client: cluster_pb2_grpc.ClusterStub, timeout: float | None) -> object:
    call = client.Watch(pb.WatchRequest(cluster_id="c"), timeout=timeout)
    message = await call.read()
    if message is grpc.aio.EOF:
        await call  # raises the call's error
    call.cancel()
    return message


@pytest.mark.parametrize("call", [_hello, _watch], ids=["unary", "stream start"])
async def test_rate_limit_delays_then_refuses_past_the_deadline(call: Call) -> None:
    async with (
        grpc_live(grpc_settings(rate_limit=0.5, rate_burst=BURST)) as live,
        live.channel() as channel,
    ):
        client = stub(channel)
        for _ in range(BURST):
            await call(client, 5.0)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(client, 0.5)  # the next token is ~2 s away
        assert (caught.value.code(), caught.value.details()) == (
            EXHAUSTED,
            "rate limit exceeds request timeout",
        )
        # Upstream delays rather than rejects: with enough time left, the call waits.
        started = time.monotonic()
        await call(client, 5.0)
        assert 0.5 < time.monotonic() - started < 4.5
        assert live.runtime.metrics.rate_limited._value.get() >= 1


async def test_rate_limit_is_per_client_ip() -> None:
    settings = grpc_settings(rate_limit=1, rate_burst=1, trust_x_real_ip=True)
    async with grpc_live(settings) as live, live.channel() as channel:
        client = stub(channel)

        async def hello(ip: str) -> None:
            await client.Hello(
                pb.HelloRequest(cluster_id="c"), metadata=[("x-real-ip", ip)], timeout=0.3
            )

        await hello("10.0.0.1")
        await hello("10.0.0.2")  # another bucket
        with pytest.raises(grpc.aio.AioRpcError):
            await hello("10.0.0.1")


async def test_concurrent_waiters_all_get_through_in_time() -> None:
    settings = grpc_settings(rate_limit=20, rate_burst=1)
    async with grpc_live(settings) as live, live.channel() as channel:
        client = stub(channel)
        async with asyncio.timeout(10):
            await asyncio.gather(*(_hello(client, 5.0) for _ in range(10)))


async def test_an_oversized_message_is_refused_and_the_server_keeps_serving() -> None:
    from discovery.grpc.server import MAX_REQUEST_BYTES

    async with grpc_live() as live, live.channel() as channel:
        client = stub(channel)
        huge = upd(endpoints=(b"e" * 8,) * (MAX_REQUEST_BYTES // 10))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.AffiliateUpdate(huge)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        many = upd(endpoints=(b"same",) * 257)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.AffiliateUpdate(many)
        assert caught.value.code() is INVALID
        assert caught.value.details() == "too many endpoints in the request"
        await client.AffiliateUpdate(upd(endpoints=(b"same",) * 256))
