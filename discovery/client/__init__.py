"""Clients of a discovery service, one interface for both wire protocols.

`connect(url)` picks the implementation: http(s):// speaks our JSON/SSE API (watch resumes
by revision), grpc:// and grpcs:// speak the Talos gRPC API (any compatible service; a
watch always starts from a snapshot). The node agent depends on this module only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from discovery.client.signing import RequestSigner


class ClientError(Exception):
    """The service refused the call or could not be reached; `retryable` says which."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class RawAffiliate:
    """An affiliate as the service holds it: sealed data and sealed endpoints."""

    id: str
    data: bytes
    endpoints: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class HelloReply:
    client_ip: IPv4Address | IPv6Address | None
    redirect: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every affiliate of the cluster; replaces whatever the watcher knew."""

    affiliates: tuple[RawAffiliate, ...]
    revision: int | None


@dataclass(frozen=True, slots=True)
class Updated:
    affiliate: RawAffiliate
    revision: int | None


@dataclass(frozen=True, slots=True)
class Deleted:
    affiliate_id: str
    revision: int | None


WatchEvent = Snapshot | Updated | Deleted


class DiscoveryClient(Protocol):
    endpoint: str

    async def hello(self, cluster_id: str, client_version: str) -> HelloReply:
        """The caller's public IP as seen by the service, and a redirect if any."""
        ...

    async def update(
        self,
        cluster_id: str,
        affiliate_id: str,
        *,
        data: bytes | None,
        endpoints: Sequence[bytes],
        ttl: timedelta,
    ) -> None:
        """Create or update an affiliate (data replaces, endpoints merge)."""
        ...

    async def delete(self, cluster_id: str, affiliate_id: str) -> None:
        """Delete an affiliate; idempotent."""
        ...

    async def list(self, cluster_id: str) -> list[RawAffiliate]:
        """Every live affiliate of the cluster."""
        ...

    def watch(self, cluster_id: str, *, since: int | None = None) -> AsyncIterator[WatchEvent]:
        """A Snapshot first (or, over HTTP with `since`, the missed changes), then changes.

        Ends by raising ClientError when the stream breaks; call again to reconnect.
        """
        ...

    async def aclose(self) -> None:
        """Close connections. Idempotent."""
        ...


def connect(
    url: str, *, timeout: float = 10.0, signer: RequestSigner | None = None
) -> DiscoveryClient:
    """A client for `url`: http(s)://host:port or grpc(s)://host:port; ValueError otherwise.
    With `signer`, its writes are signed as that node (see discovery/client/signing.py)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("http", "https"):
        from discovery.client.http import HttpDiscoveryClient

        return HttpDiscoveryClient(url, timeout=timeout, signer=signer)
    if scheme in ("grpc", "grpcs"):
        from discovery.client.grpc import GrpcDiscoveryClient

        return GrpcDiscoveryClient(url, timeout=timeout, signer=signer)
    raise ValueError(
        f"discovery endpoint must start with http://, https://, grpc:// or grpcs://: {url!r}"
    )
