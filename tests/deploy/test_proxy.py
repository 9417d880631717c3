"""The nginx examples: they route gRPC over HTTP/2, stream SSE unbuffered and set X-Real-IP."""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.deploy_support import DEPLOY, optional_tool
from tests.deploy.nginx_conf import Directive, headers, inherited, parse

PROXY = DEPLOY / "proxy"
CONFIGS = sorted(PROXY.glob("*.conf"))
WATCH_PATHS = ("/v1/clusters/c/watch", "/v1/clusters/a/b+c=/watch")
GRPC_PATH = "/sidero.discovery.server.Cluster/Watch"


def _servers(conf: Path) -> list[Directive]:
    return parse(conf).one("http").all("server")


def _route(server: Directive, path: str) -> Directive:
    """The location nginx picks for `path` (regex locations, then the longest prefix)."""
    locations = server.all("location")
    for location in locations:
        if location.args[0] == "~" and re.search(location.args[1], path):
            return location
    prefixes = [loc for loc in locations if len(loc.args) == 1 and path.startswith(loc.args[0])]
    assert prefixes, f"no location for {path}"
    return max(prefixes, key=lambda loc: len(loc.args[0]))


def _grpc_server(conf: Path) -> Directive:
    return next(s for s in _servers(conf) if _route(s, GRPC_PATH).all("grpc_pass"))


def _http_server(conf: Path) -> Directive:
    return next(s for s in _servers(conf) if _route(s, "/v1/hello").all("proxy_pass"))


@pytest.mark.parametrize("conf", CONFIGS, ids=lambda p: p.name)
def test_grpc_goes_over_http2_with_the_client_ip(conf: Path) -> None:
    http = parse(conf).one("http")
    server = _grpc_server(conf)
    for listen in server.all("listen"):
        assert "http2" in listen.args, "gRPC needs HTTP/2 from the client"
    location = _route(server, GRPC_PATH)
    target = location.one("grpc_pass").args[0]
    assert target.startswith(("grpc://", "grpcs://")), "grpc_pass speaks HTTP/2 to the backend"
    upstream = target.split("://", 1)[1]
    assert any(u.args == [upstream] for u in http.all("upstream")), f"no upstream {upstream}"
    sent = headers([http, server, location], "grpc_set_header")
    assert sent.get("x-real-ip") == "$remote_addr", "X-Real-IP must be overwritten, not passed"
    # Watch streams are idle while nothing changes: the default 60 s would cut them.
    assert inherited([http, server, location], "grpc_read_timeout") == ["1h"]


@pytest.mark.parametrize("conf", CONFIGS, ids=lambda p: p.name)
def test_sse_watches_are_unbuffered_with_long_timeouts(conf: Path) -> None:
    http = parse(conf).one("http")
    server = _http_server(conf)
    for path in WATCH_PATHS:
        location = _route(server, path)
        chain = [http, server, location]
        assert inherited(chain, "proxy_buffering") == ["off"], path
        assert inherited(chain, "proxy_read_timeout") == ["1h"], path
        assert inherited(chain, "proxy_http_version") == ["1.1"]
        sent = headers(chain, "proxy_set_header")
        assert sent["x-real-ip"] == "$remote_addr"
        # A client-written X-Forwarded-For must not survive: the service trusts its first entry.
        assert sent["x-forwarded-for"] == "$remote_addr"
        assert sent["connection"] == "", "upstream keepalive needs Connection cleared"


@pytest.mark.parametrize("conf", CONFIGS, ids=lambda p: p.name)
def test_proxy_pass_forwards_the_raw_uri(conf: Path) -> None:
    """A URI part after the upstream makes nginx re-encode the path: %2F in ids would break."""
    for server in _servers(conf):
        for location in server.all("location"):
            for directive in location.all("proxy_pass") + location.all("grpc_pass"):
                rest = directive.args[0].partition("://")[2]
                assert "/" not in rest, f"{conf.name}: {directive.args[0]} has a URI part"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "discovery.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("conf", CONFIGS, ids=lambda p: p.name)
def test_nginx_accepts_the_config(conf: Path, tmp_path: Path) -> None:
    nginx = optional_tool("nginx", "nginx")
    text = conf.read_text()
    # Compose service names do not resolve here, and the certificate paths are examples.
    text = re.sub(r"server discovery-\d+:", "server 127.0.0.1:", text)
    cert, key = _self_signed(tmp_path)
    text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", text)
    text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", text)
    copy = tmp_path / conf.name
    copy.write_text(text)
    result = subprocess.run(
        [nginx, "-t", "-q", "-c", str(copy), "-p", str(tmp_path), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
