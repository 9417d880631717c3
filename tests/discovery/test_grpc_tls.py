"""gRPC over TLS, and certificate reload when the files change (new connections only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from discovery.grpc.tls import CertificateReloader
from discovery.proto import cluster_pb2 as pb
from tests.support.certs import Pair, self_signed
from tests.support.grpc_live import GrpcLive, grpc_live, grpc_settings, stub

pytestmark = pytest.mark.anyio


def write(pair: Pair, cert_path: Path, key_path: Path) -> None:
    cert_path.write_bytes(pair.cert)
    key_path.write_bytes(pair.key)


@dataclass
class TLSServer:
    live: GrpcLive
    cert_path: Path
    key_path: Path
    first: Pair


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[TLSServer]:
    first = self_signed("first")
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    write(first, cert_path, key_path)
    settings = grpc_settings(tls_cert=str(cert_path), tls_key=str(key_path))
    async with grpc_live(settings) as live:
        yield TLSServer(live, cert_path, key_path, first)


async def hello_trusting(server: TLSServer, root: bytes) -> pb.HelloResponse:
    """Hello over a fresh connection that trusts only `root`."""
    credentials = grpc.ssl_channel_credentials(root_certificates=root)
    # A local subchannel pool: never reuse a connection another test channel opened.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.secure_channel(server.live.target, credentials, options=options) as channel:
        response: pb.HelloResponse = await stub(channel).Hello(
            pb.HelloRequest(cluster_id="c"), timeout=5
        )
        return response


async def refused(server: TLSServer, root: bytes) -> bool:
    try:
        await hello_trusting(server, root)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() is grpc.StatusCode.UNAVAILABLE
        return True
    return False


async def test_tls_serves_the_configured_certificate(tls: TLSServer) -> None:
    response = await hello_trusting(tls, tls.first.cert)
    assert response.client_ip == bytes([127, 0, 0, 1])
    assert await refused(tls, self_signed("stranger").cert)


async def test_plaintext_clients_are_refused_on_a_tls_port(tls: TLSServer) -> None:
    async with grpc.aio.insecure_channel(tls.live.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub(channel).Hello(pb.HelloRequest(cluster_id="c"), timeout=2)


async def test_a_new_certificate_is_served_to_new_connections(tls: TLSServer) -> None:
    await hello_trusting(tls, tls.first.cert)
    second = self_signed("second")
    write(second, tls.cert_path, tls.key_path)
    await hello_trusting(tls, second.cert)
    assert await refused(tls, tls.first.cert)


async def test_a_half_written_pair_keeps_the_previous_certificate(
    tls: TLSServer, caplog: pytest.LogCaptureFixture
) -> None:
    second = self_signed("second")
    tls.cert_path.write_bytes(second.cert)  # the key is not replaced yet
    await hello_trusting(tls, tls.first.cert)
    assert "TLS certificate not reloaded, keeping the previous one" in caplog.messages
    await hello_trusting(tls, tls.first.cert)  # warned once, still serving
    assert caplog.messages.count("TLS certificate not reloaded, keeping the previous one") == 1
    tls.key_path.write_bytes(second.key)
    await hello_trusting(tls, second.cert)


def test_unusable_files_fail_at_startup(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    write(Pair(self_signed("a").cert, self_signed("b").key), cert, key)
    with pytest.raises(ValueError, match="does not match"):
        CertificateReloader(cert, key)
    with pytest.raises(OSError):
        CertificateReloader(tmp_path / "missing.pem", key)


async def test_cert_without_key_is_a_configuration_error(tmp_path: Path) -> None:
    from discovery.grpc.server import start_grpc_server
    from discovery.startup import StartupError

    async with grpc_live() as live:
        settings = grpc_settings(tls_cert=str(tmp_path / "c"))
        with pytest.raises(StartupError, match="together"):
            await start_grpc_server(live.service, settings, live.runtime.metrics)
