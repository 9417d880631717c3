"""HTTPS with the service's own certificate, reloaded when the files change."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest

from discovery.http.tls import reload_on_change
from tests.support.certs import self_signed
from tests.support.process import ServiceProcess

pytestmark = pytest.mark.anyio


def write_self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    return self_signed(name).write(directory)


def _context_trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


async def test_service_serves_https_with_its_certificate(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path, "first")
    proc = ServiceProcess(
        "memory://",
        extra=["--tls-cert", str(cert), "--tls-key", str(key)],
        scheme="https",
        verify=_context_trusting(cert),
    ).start()
    try:
        url = f"https://127.0.0.1:{proc.http_port}/healthz"
        async with httpx.AsyncClient(verify=_context_trusting(cert)) as client:
            assert (await client.get(url)).status_code == 200
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:  # system roots do not trust it
                await client.get(url)
    finally:
        assert proc.stop() == 0


async def test_context_reloads_when_files_change(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path, "first")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    reloader = asyncio.create_task(reload_on_change(context, str(cert), str(key), interval=0.05))

    async def served_name(trust: Path) -> str:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=_context_trusting(trust), server_hostname="127.0.0.1"
        )
        peer = writer.get_extra_info("peercert")
        writer.close()
        return str(dict(x[0] for x in peer["subject"])["commonName"])

    try:
        assert await served_name(cert) == "first"
        await asyncio.sleep(0.01)
        cert, key = write_self_signed(tmp_path, "second")
        async with asyncio.timeout(5):
            while True:
                try:
                    if await served_name(cert) == "second":
                        break
                except ssl.SSLError:
                    pass
                await asyncio.sleep(0.05)
    finally:
        reloader.cancel()
        server.close()
        await server.wait_closed()
