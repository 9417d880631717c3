"""discovery.ca_file: TLS discovery endpoints verified against a private CA."""

from __future__ import annotations

from pathlib import Path

import pytest

from discovery.client import connect
from discovery.settings import Settings
from kubespan.clients import CAFileError, client_factory
from kubespan.config import load_config
from tests.support.certs import self_signed
from tests.support.live import live_server

CLUSTER = "c1"


def test_without_a_ca_file_the_default_factory() -> None:
    assert client_factory(None) is connect


def test_an_unreadable_ca_file_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(CAFileError, match=r"discovery.ca_file .*missing.pem"):
        client_factory(str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(CAFileError, match=r"discovery\.ca_file"):
        client_factory(str(junk))


def test_ca_file_is_a_config_key() -> None:
    text = (
        "cluster: {id: c, secret: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='}\n"
        "discovery: {endpoints: ['https://d:3001'], ca_file: /etc/kubespan/ca.pem}\n"
    )
    assert load_config(text).discovery.ca_file == "/etc/kubespan/ca.pem"


@pytest.mark.anyio
async def test_https_endpoint_signed_by_the_private_ca(tmp_path: Path) -> None:
    cert, key = self_signed("discovery").write(tmp_path)  # its own root: the private CA
    settings = Settings(rate_limit=0, storage="memory://", tls_cert=str(cert), tls_key=str(key))
    async with live_server(settings) as server:
        url = server.url.replace("http://", "https://")
        trusting = client_factory(str(cert))(url)
        try:
            reply = await trusting.hello(CLUSTER, "kubespan/test")
            assert reply is not None
            assert await trusting.list(CLUSTER) == []
        finally:
            await trusting.aclose()
        # The system roots do not know the private CA.
        default = connect(url)
        try:
            with pytest.raises(Exception, match=r"(?i)certificate|ssl"):
                await default.list(CLUSTER)
        finally:
            await default.aclose()
