"""Discovery clients for the agent: `discovery.client.connect`, trusting a private CA if asked.

With `discovery.ca_file`, `https://` and `grpcs://` endpoints are verified against that CA
bundle instead of the system roots (a discovery service with a certificate from an internal
CA, as Talos allows); plain `http://` and `grpc://` are unaffected.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from discovery.client import DiscoveryClient, connect
from discovery.client.grpc import GrpcDiscoveryClient
from discovery.client.http import HttpDiscoveryClient
from kubespan.session import ClientFactory


class CAFileError(Exception):
    """The configured CA bundle cannot be read or holds no certificate."""


def client_factory(ca_file: str | None) -> ClientFactory:
    """connect(), or a factory whose TLS endpoints trust only `ca_file`; CAFileError at once
    when the file is unreadable, so a typo stops the agent at start, not at first connect."""
    if ca_file is None:
        return connect
    try:
        context = ssl.create_default_context(cafile=ca_file)
        Path(ca_file).read_bytes()
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CAFileError(f"discovery.ca_file {ca_file}: {reason}") from None

    def make(url: str) -> DiscoveryClient:
        scheme = url.split("://", 1)[0].lower()
        if scheme == "https":
            transport = httpx.AsyncHTTPTransport(verify=context)
            return HttpDiscoveryClient(url, transport=transport)
        if scheme == "grpcs":
            return GrpcDiscoveryClient(url, ca_file=ca_file)
        return connect(url)

    return make
