"""Node-side affiliate records: what a node publishes about itself, once decrypted.

The byte encoding is Talos' `sidero.discovery.client` protobuf (see talos_codec.py); these
dataclasses are the domain's view of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from membership.health import MeshHealth

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class EndpointAddr:
    """A WireGuard endpoint candidate: IP and UDP port."""

    ip: IPAddress
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeSpanInfo:
    """The mesh part of a record: WireGuard key, ULA address, extra routed networks."""

    public_key: str
    address: IPv6Address | None = None
    additional_addresses: tuple[IPNetwork, ...] = ()
    exclude_advertised_addresses: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AffiliateRecord:
    """The decrypted `data` of an affiliate (Talos `sidero.discovery.client.Affiliate`)."""

    node_id: str
    addresses: tuple[IPAddress, ...] = ()
    hostname: str = ""
    nodename: str = ""
    machine_type: str = ""
    operating_system: str = ""
    kubespan: KubeSpanInfo | None = None
    api_server_port: int | None = None
    mesh_health: MeshHealth | None = None
    """Ours (field 1000, which Talos skips): the node's view of its peers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodedAffiliate:
    """One affiliate as a node sees it: its record and its decrypted endpoints."""

    record: AffiliateRecord
    endpoints: tuple[EndpointAddr, ...] = field(default=())
