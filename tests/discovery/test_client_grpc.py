"""GrpcDiscoveryClient against the real gRPC front end on a real core (plaintext and TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from discovery.client import ClientError, Deleted, RawAffiliate, Snapshot, Updated, WatchEvent
from discovery.client.grpc import GrpcDiscoveryClient
from discovery.client.http import HttpDiscoveryClient
from discovery.core.clock import system_clock
from discovery.grpc.server import GrpcServer, start_grpc_server
from discovery.settings import Settings
from tests.support.live import LiveServer, live_server

pytestmark = pytest.mark.anyio

TTL = timedelta(minutes=5)
CLUSTER = "q8/+Zx==%2F"
AFFILIATE = "node/1+2="


@dataclass
class Running:
    live: LiveServer
    grpc: GrpcServer
    client: GrpcDiscoveryClient


def settings_for(**overrides: Any) -> Settings:
    return Settings(
        **{"rate_limit": 0, "storage": "memory://", "grpc_addr": "127.0.0.1:0", **overrides}
    )


@contextlib.asynccontextmanager
async def running(
    settings: Settings | None = None, *, ca_file: str | None = None
) -> AsyncIterator[Running]:
    """One core behind both front ends; the client speaks gRPC (grpcs when TLS is set)."""
    settings = settings or settings_for()
    async with live_server(settings) as live:
        server = await start_grpc_server(live.service, settings, live.runtime.metrics)
        scheme = "grpcs" if settings.tls_cert else "grpc"
        url = f"{scheme}://127.0.0.1:{server.port}"
        grpc_client = GrpcDiscoveryClient(url, timeout=5.0, ca_file=ca_file)
        try:
            yield Running(live, server, grpc_client)
        finally:
            await grpc_client.aclose()
            await server.stop(grace=1.0)


async def take(stream: AsyncIterator[WatchEvent], n: int = 1) -> list[WatchEvent]:
    async with asyncio.timeout(5.0):
        return [await anext(stream) for _ in range(n)]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "discovery test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


# -- hello ---------------------------------------------------------------------------------


async def test_hello_reports_the_client_ip_and_no_redirect() -> None:
    async with running() as r:
        reply = await r.client.hello(CLUSTER, "v1.9.0")
    assert reply.client_ip == IPv4Address("127.0.0.1")
    assert reply.redirect is None


async def test_hello_redirect_keeps_the_grpc_scheme() -> None:
    async with running(settings_for(redirect_endpoint="elsewhere.example:3000")) as r:
        reply = await r.client.hello(CLUSTER, "v1.9.0")
    assert reply.redirect == "grpc://elsewhere.example:3000"


async def test_hello_without_client_ip_reporting() -> None:
    async with running(settings_for(disable_client_ip=True)) as r:
        reply = await r.client.hello(CLUSTER, "v1.9.0")
    assert reply.client_ip is None


async def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    async with running(settings_for(tls_cert=cert, tls_key=key), ca_file=cert) as r:
        assert r.client.endpoint.startswith("grpcs://")
        reply = await r.client.hello(CLUSTER, "v1.9.0")
        await r.client.update(CLUSTER, AFFILIATE, data=b"d", endpoints=[], ttl=TTL)
        assert [a.id for a in await r.client.list(CLUSTER)] == [AFFILIATE]
    assert reply.client_ip == IPv4Address("127.0.0.1")


async def test_tls_with_an_untrusted_certificate_is_retryable(tmp_path: Path) -> None:
    # System roots do not know a self-signed certificate: the handshake fails as UNAVAILABLE.
    cert, key = self_signed(tmp_path)
    async with running(settings_for(tls_cert=cert, tls_key=key)) as r:
        with pytest.raises(ClientError) as caught:
            await r.client.hello(CLUSTER, "v1.9.0")
    assert caught.value.retryable


# -- update, list, delete ------------------------------------------------------------------


async def test_update_list_delete_round_trip_ids_with_reserved_characters() -> None:
    async with running() as r:
        client = r.client
        await client.update(CLUSTER, AFFILIATE, data=b"sealed", endpoints=[b"e1"], ttl=TTL)
        # Endpoints merge and data=None (unset on the wire) keeps the data.
        await client.update(CLUSTER, AFFILIATE, data=None, endpoints=[b"e2", b"e1"], ttl=TTL)
        await client.update(CLUSTER, "other", data=b"x", endpoints=[], ttl=TTL)
        listed = sorted(await client.list(CLUSTER), key=lambda a: a.id)
        assert listed == [
            RawAffiliate(id=AFFILIATE, data=b"sealed", endpoints=(b"e1", b"e2")),
            RawAffiliate(id="other", data=b"x", endpoints=()),
        ]
        _, core = r.live.service.list_affiliates(CLUSTER)
        assert {a.id for a in core} == {AFFILIATE, "other"}

        await client.delete(CLUSTER, AFFILIATE)
        await client.delete(CLUSTER, AFFILIATE)  # idempotent
        assert [a.id for a in await client.list(CLUSTER)] == ["other"]
        assert await client.list("an empty cluster") == []


async def test_ttl_is_sent_as_a_duration() -> None:
    async with running() as r:
        ttl = timedelta(seconds=90, milliseconds=500)
        await r.client.update(CLUSTER, AFFILIATE, data=b"d", endpoints=[], ttl=ttl)
        _, [affiliate] = r.live.service.list_affiliates(CLUSTER)
    remaining = affiliate.expires_at - system_clock()
    assert timedelta(seconds=85) < remaining <= ttl


# -- watch ---------------------------------------------------------------------------------


async def test_watch_snapshot_then_updates_and_deletes_by_other_writers() -> None:
    async with running() as r, HttpDiscoveryClient(r.live.url) as http_writer:
        await r.client.update(CLUSTER, "before", data=b"b", endpoints=[b"e"], ttl=TTL)
        async with contextlib.aclosing(r.client.watch(CLUSTER)) as stream:
            [snapshot] = await take(stream)
            # Writers on either protocol reach gRPC watchers through the shared core.
            await http_writer.update(CLUSTER, AFFILIATE, data=b"one", endpoints=[b"e1"], ttl=TTL)
            await r.client.update("another cluster", "x", data=b"x", endpoints=[], ttl=TTL)
            await r.client.update(CLUSTER, AFFILIATE, data=None, endpoints=[b"e2"], ttl=TTL)
            await http_writer.delete(CLUSTER, "before")
            events = await take(stream, 3)

    assert snapshot == Snapshot(affiliates=(RawAffiliate("before", b"b", (b"e",)),), revision=None)
    assert events == [
        Updated(RawAffiliate(AFFILIATE, b"one", (b"e1",)), revision=None),
        # Each update carries the whole affiliate: data plus every endpoint.
        Updated(RawAffiliate(AFFILIATE, b"one", (b"e1", b"e2")), revision=None),
        Deleted("before", revision=None),
    ]


async def test_watch_ignores_since_and_always_starts_with_a_snapshot() -> None:
    async with running() as r:
        await r.client.update(CLUSTER, "a", data=b"a", endpoints=[], ttl=TTL)
        async with contextlib.aclosing(r.client.watch(CLUSTER, since=1)) as stream:
            [first] = await take(stream)
    assert first == Snapshot(affiliates=(RawAffiliate("a", b"a", ()),), revision=None)


async def test_an_empty_cluster_still_starts_with_a_snapshot() -> None:
    async with running() as r, contextlib.aclosing(r.client.watch(CLUSTER)) as stream:
        [first] = await take(stream)
    assert first == Snapshot(affiliates=(), revision=None)


@pytest.mark.parametrize("how", ["graceful", "abrupt"])
async def test_watch_raises_retryable_when_the_server_stops(how: str) -> None:
    async with running() as r, contextlib.aclosing(r.client.watch(CLUSTER)) as stream:
        await take(stream)
        # Graceful: our server ends watches with OK, as upstream does. Abrupt: grpc cancels
        # every call at once and the client sees UNAVAILABLE.
        stop = r.grpc.stop(grace=1.0) if how == "graceful" else r.grpc.server.stop(0)
        stopping = asyncio.create_task(stop)
        with pytest.raises(ClientError) as caught:
            await take(stream)
        await stopping
    assert caught.value.retryable


async def test_watch_of_an_invalid_cluster_fails_not_retryable() -> None:
    async with running() as r:
        with pytest.raises(ClientError, match="cluster ID is too long") as caught:
            await anext(r.client.watch("c" * 300))
    assert not caught.value.retryable


# -- errors --------------------------------------------------------------------------------


async def test_too_big_data_is_refused_with_the_servers_message() -> None:
    async with running() as r:
        with pytest.raises(ClientError, match="affiliate data is too big") as caught:
            await r.client.update(CLUSTER, AFFILIATE, data=b"x" * 4096, endpoints=[], ttl=TTL)
    assert not caught.value.retryable
    assert "INVALID_ARGUMENT" in str(caught.value)


async def test_capacity_limits_are_not_retryable() -> None:
    async with running(settings_for(cluster_affiliates_max=1)) as r:
        await r.client.update(CLUSTER, "a", data=b"a", endpoints=[], ttl=TTL)
        with pytest.raises(ClientError, match="too many affiliates") as caught:
            await r.client.update(CLUSTER, "b", data=b"b", endpoints=[], ttl=TTL)
    assert not caught.value.retryable
    assert "RESOURCE_EXHAUSTED" in str(caught.value)


async def test_rate_limit_beyond_the_deadline_is_retryable() -> None:
    async with running(settings_for(rate_limit=0.001, rate_burst=1)) as r:
        await r.client.list(CLUSTER)
        with pytest.raises(ClientError, match="rate limit") as caught:
            await r.client.list(CLUSTER)
    assert caught.value.retryable
    assert "RESOURCE_EXHAUSTED" in str(caught.value)


async def test_an_unreachable_server_is_retryable() -> None:
    async with GrpcDiscoveryClient(f"grpc://127.0.0.1:{closed_port()}", timeout=2.0) as client:
        with pytest.raises(ClientError) as hello:
            await client.hello(CLUSTER, "v1")
        with pytest.raises(ClientError) as watch:
            await anext(client.watch(CLUSTER))
    assert hello.value.retryable and watch.value.retryable


async def test_calls_after_aclose_fail_not_retryable() -> None:
    async with running() as r:
        await r.client.hello(CLUSTER, "v1")
        await r.client.aclose()
        with pytest.raises(ClientError, match="closed") as caught:
            await r.client.list(CLUSTER)
    assert not caught.value.retryable


@pytest.mark.parametrize(
    "url", ["grpc://", "grpc://host:1/path", "http://host:1", "host:3000", "grpcs:/x"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="grpc://host:port"):
        GrpcDiscoveryClient(url)
