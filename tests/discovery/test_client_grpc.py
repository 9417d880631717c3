"""GrpcDiscoveryClient: the client contract on a real gRPC front end, and what only gRPC has."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
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

from discovery.client import (
    ClientError,
    Deleted,
    DiscoveryClient,
    RawAffiliate,
    Snapshot,
    Updated,
)
from discovery.client.grpc import GrpcDiscoveryClient
from discovery.client.http import HttpDiscoveryClient
from discovery.grpc.server import GrpcServer, start_grpc_server
from discovery.settings import Settings
from tests.discovery.client_contract import DiscoveryClientContract
from tests.discovery.client_harness import (
    AFFILIATE,
    CLUSTER,
    TTL,
    Options,
    Serve,
    Served,
    Stoppable,
    closed_port,
    take,
)
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings
from tests.support.live import LiveServer, live_server

pytestmark = pytest.mark.anyio


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


class TestGrpcDiscoveryClient(DiscoveryClientContract):
    resumes = False
    revisions = False
    status_names = {
        "invalid": "INVALID_ARGUMENT",
        "exhausted": "RESOURCE_EXHAUSTED",
        "rate_limited": "RESOURCE_EXHAUSTED",
    }

    @pytest.fixture
    def serve(self) -> Serve:
        @contextlib.asynccontextmanager
        async def serve_(options: Options) -> AsyncIterator[Served]:
            server = Stoppable(grpc_live(grpc_settings(**options.settings())))
            live: GrpcLive = await server.start()
            served = Served(
                IPv4Address("127.0.0.1"),
                lambda: GrpcDiscoveryClient(f"grpc://{live.target}", timeout=5.0),
                live.service.list_affiliates,
                server.stop,
            )
            try:
                yield served
            finally:
                await served.aclose()
                await server.stop()

        return serve_

    @pytest.fixture
    def unreachable(self) -> DiscoveryClient:
        return GrpcDiscoveryClient(f"grpc://127.0.0.1:{closed_port()}", timeout=2.0)


# -- TLS -------------------------------------------------------------------------------------


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


# -- watch ---------------------------------------------------------------------------------


async def test_http_writers_reach_grpc_watchers_through_the_shared_core() -> None:
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


async def test_watch_raises_retryable_when_the_server_stops_abruptly() -> None:
    async with running() as r, contextlib.aclosing(r.client.watch(CLUSTER)) as stream:
        await take(stream)
        # A graceful stop (ours ends watches with OK, as upstream does) is in the contract;
        # abruptly, grpc cancels every call at once and the client sees UNAVAILABLE.
        stopping = asyncio.create_task(r.grpc.server.stop(0))
        with pytest.raises(ClientError) as caught:
            await take(stream)
        await stopping
    assert caught.value.retryable


@pytest.mark.parametrize(
    "url", ["grpc://", "grpc://host:1/path", "http://host:1", "host:3000", "grpcs:/x"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="grpc://host:port"):
        GrpcDiscoveryClient(url)
