"""What a member's record may claim before it becomes a peer: key, endpoints, routed networks.

A member holds the cluster secret, so its record opens; that does not make every claim in it
safe to act on (docs/operations.md, "Hostile members"). These rules are pure and applied by
peers.build_peers() on every pass:

- the public key must be a usable WireGuard key: canonical base64 of 32 bytes, not a
  low-order point, not our own key; otherwise the record is refused as a peer;
- endpoints that cannot be another node's WireGuard port (loopback, unspecified, multicast,
  reserved, link-local, port 0, the mesh prefix, our own addresses, a discovery server) are
  ignored;
- no routed network may be wider than /8 (IPv4) or /16 (IPv6), and one member's additional
  networks together may cover at most that much; special-purpose ranges, the mesh prefix
  (other than the member's own mesh address), our own addresses and the discovery servers'
  are never routed to a peer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from kubespan.ipset import IPSet
from membership.record import EndpointAddr, IPAddress, IPNetwork

KEY_BYTES = 32
WIDEST_PREFIX = {4: 8, 6: 16}
"""The shortest prefix a member may route to itself, and its additional networks' budget."""

# Never routed into the mesh: a peer cannot be the way to this host (loopback, unspecified,
# "this network"), to a link (link-local), to a group (multicast) or to nothing (reserved).
_SPECIAL = IPSet.of(
    ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "fe80::/10",
        "ff00::/8",
    )
)

# Any scalar, once clamped, is a multiple of the cofactor: X25519 with a low-order point gives
# all zeros, which cryptography refuses. So one fixed private key detects every such point.
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(KEY_BYTES)))


@lru_cache(maxsize=4096)
def key_problem(public_key: str) -> str | None:
    """Why `public_key` cannot be a WireGuard peer's key, or None when it can."""
    try:
        raw = base64.b64decode(public_key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return "public key is not base64"
    if len(raw) != KEY_BYTES:
        return f"public key is {len(raw)} bytes, not {KEY_BYTES}"
    if base64.b64encode(raw).decode() != public_key:
        # Other spellings of the same bytes would be one peer to WireGuard but two to us.
        return "public key is not in canonical base64"
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        return "public key is a low-order point"
    return None


def _unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def discovery_addresses(urls: Iterable[str]) -> frozenset[IPAddress]:
    """The discovery servers' addresses that the URLs spell as IP literals (no DNS here)."""
    out: set[IPAddress] = set()
    for url in urls:
        try:
            out.add(ip_address(urlsplit(url).hostname or ""))
        except ValueError:
            continue
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """The rules for one pass: our mesh prefix, our own addresses, the discovery servers."""

    mesh_prefix: IPv6Network
    own: frozenset[IPAddress] = frozenset()
    discovery: frozenset[IPAddress] = frozenset()

    def endpoints(self, endpoints: Iterable[EndpointAddr]) -> tuple[tuple[EndpointAddr, ...], int]:
        """The usable endpoints in published order, and how many were ignored."""
        kept: list[EndpointAddr] = []
        ignored = 0
        for endpoint in endpoints:
            ip = _unmapped(endpoint.ip)
            if (
                endpoint.port == 0
                or ip in _SPECIAL
                or ip.is_multicast
                or ip.is_reserved
                or ip in self.mesh_prefix
                or ip in self.own
                or ip in self.discovery
            ):
                ignored += 1
            elif endpoint not in kept:
                kept.append(endpoint)
        return tuple(kept), ignored

    def never_routed(self) -> IPSet:
        """What no peer is given: special ranges, the mesh prefix, us and the discovery servers."""
        return _SPECIAL | IPSet.of([self.mesh_prefix, *self.own, *self.discovery])

    def mesh_address(self, address: IPv6Address | None) -> IPv6Address | None:
        """The member's mesh address if it is a host of our mesh prefix and not ours."""
        if address is None or address not in self.mesh_prefix or address in self.own:
            return None
        if address in (self.mesh_prefix.network_address, self.mesh_prefix.broadcast_address):
            return None
        return address


def additional_networks(
    networks: Sequence[IPNetwork], never: IPSet
) -> tuple[IPSet, list[IPNetwork]]:
    """The member's additional networks within the width rule and its budget, and the refused.

    Prefixes are judged in published order: each one wider than WIDEST_PREFIX, or that would
    take the member's total (less `never`, which it is not given anyway) past a WIDEST_PREFIX
    worth of addresses, is refused whole.
    """
    kept = IPSet()
    refused: list[IPNetwork] = []
    for network in networks:
        widest = WIDEST_PREFIX[network.version]
        grown = kept | (IPSet.of([network]) - never)
        budget = 1 << (network.max_prefixlen - widest)
        if network.prefixlen < widest or grown.size(network.version) > budget:
            refused.append(network)
        else:
            kept = grown
    return kept, refused
