"""Desired WireGuard peers from discovered affiliates (Talos PeerSpecController), and the
endpoints this node publishes about itself (Talos LocalAffiliateController).

See reference/talos-kubespan.md 1.3 and 3.2.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import (
    IPv4Address,
    IPv6Address,
    ip_network,
    summarize_address_range,
)

from kubespan.addressing import ula_prefix
from kubespan.config import Config, EndpointFilter
from membership.record import DecodedAffiliate, EndpointAddr, IPAddress, IPNetwork

_Range = tuple[int, int]
"""An inclusive range of addresses as integers, within one IP version."""


@dataclass(frozen=True, slots=True)
class IPSet:
    """An immutable set of addresses (both versions), like Go's netipx.IPSet.

    Stored as sorted, disjoint, non-adjacent inclusive integer ranges per version, which
    makes union, difference and intersection linear merges and the CIDR cover exact.
    """

    v4: tuple[_Range, ...] = ()
    v6: tuple[_Range, ...] = ()

    @classmethod
    def of(cls, networks: Iterable[IPNetwork | IPAddress]) -> IPSet:
        ranges: dict[int, list[_Range]] = {4: [], 6: []}
        for item in networks:
            net = ip_network(item)
            ranges[net.version].append((int(net.network_address), int(net.broadcast_address)))
        return cls(_normalise(ranges[4]), _normalise(ranges[6]))

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def __or__(self, other: IPSet) -> IPSet:
        return IPSet(_normalise([*self.v4, *other.v4]), _normalise([*self.v6, *other.v6]))

    def __sub__(self, other: IPSet) -> IPSet:
        return IPSet(_subtract(self.v4, other.v4), _subtract(self.v6, other.v6))

    def __and__(self, other: IPSet) -> IPSet:
        return self - (self - other)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, IPv4Address | IPv6Address):
            return False
        value = int(address)
        ranges = self.v4 if address.version == 4 else self.v6
        return any(lo <= value <= hi for lo, hi in ranges)

    def prefixes(self) -> tuple[IPNetwork, ...]:
        """The minimal CIDR cover, IPv4 first, each version in address order."""
        out: list[IPNetwork] = []
        for lo, hi in self.v4:
            out.extend(summarize_address_range(IPv4Address(lo), IPv4Address(hi)))
        for lo, hi in self.v6:
            out.extend(summarize_address_range(IPv6Address(lo), IPv6Address(hi)))
        return tuple(out)


def _normalise(ranges: Iterable[_Range]) -> tuple[_Range, ...]:
    merged: list[_Range] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _subtract(keep: Sequence[_Range], remove: Sequence[_Range]) -> tuple[_Range, ...]:
    out: list[_Range] = []
    j = 0
    for lo, hi in keep:
        while j < len(remove) and remove[j][1] < lo:
            j += 1
        k = j
        while lo <= hi and k < len(remove) and remove[k][0] <= hi:
            r_lo, r_hi = remove[k]
            if r_lo > lo:
                out.append((lo, r_lo - 1))
            lo = max(lo, r_hi + 1)
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


def cidr_cover(networks: Iterable[IPNetwork | IPAddress]) -> tuple[IPNetwork, ...]:
    """Minimal CIDR cover of the union of `networks`, IPv4 first."""
    return IPSet.of(networks).prefixes()


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerSpec:
    """One desired WireGuard peer (Talos KubeSpanPeerSpec), keyed by public key."""

    public_key: str
    node_id: str
    label: str
    address: IPv6Address | None
    allowed_ips: tuple[IPNetwork, ...]
    endpoints: tuple[EndpointAddr, ...]
    overlap: tuple[IPNetwork, ...] = ()
    """Addresses this peer published but an earlier peer (lower node id) keeps."""
    warnings: tuple[str, ...] = ()


class _Claimed:
    """Addresses already given to earlier peers, with their owners, for overlap lookups.

    The ranges are disjoint by construction (each peer only adds what nobody had), so a
    bisect on range starts finds every overlap in O(log n) instead of rescanning all peers.
    """

    def __init__(self) -> None:
        self._ranges: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}

    def overlapping(self, wanted: IPSet) -> tuple[IPSet, list[str]]:
        hits: dict[int, list[_Range]] = {4: [], 6: []}
        owners: list[str] = []
        for version, ranges in ((4, wanted.v4), (6, wanted.v6)):
            claimed = self._ranges[version]
            for lo, hi in ranges:
                i = max(bisect_right(claimed, (lo, -1, "")) - 1, 0)
                while i < len(claimed) and claimed[i][0] <= hi:
                    c_lo, c_hi, owner = claimed[i]
                    if c_hi >= lo:
                        hits[version].append((max(lo, c_lo), min(hi, c_hi)))
                        if owner not in owners:
                            owners.append(owner)
                    i += 1
        return IPSet(_normalise(hits[4]), _normalise(hits[6])), owners

    def add(self, owned: IPSet, owner: str) -> None:
        for version, ranges in ((4, owned.v4), (6, owned.v6)):
            for lo, hi in ranges:
                insort(self._ranges[version], (lo, hi, owner))


def peer_specs(
    self_node_id: str, affiliates: Iterable[DecodedAffiliate], config: Config
) -> list[PeerSpec]:
    """Desired peers in node id order, as Talos' PeerSpecController derives them.

    AllowedIPs = (additional addresses | addresses) - excluded + KubeSpan address, then
    anything an earlier peer (lower node id) already has is taken out and reported in
    `overlap`/`warnings`: WireGuard routes each address to one peer only. `config` is
    accepted for parity with Talos (which only checks that KubeSpan is enabled); peer-side
    endpoint filters (Talos PR #14176) would read it.
    """
    del config
    specs: list[PeerSpec] = []
    by_key: dict[str, int] = {}
    claimed = _Claimed()
    for affiliate in sorted(affiliates, key=lambda a: a.record.node_id):
        record, kubespan = affiliate.record, affiliate.record.kubespan
        if record.node_id == self_node_id or kubespan is None or not kubespan.public_key:
            continue
        label = record.nodename or record.hostname or record.node_id
        if kubespan.public_key in by_key:
            # A cloned state dir: one key cannot be two peers. Keep the first, as for IPs.
            first = specs[by_key[kubespan.public_key]]
            note = f"public key also published by node {record.node_id} ({label}); ignored"
            specs[by_key[kubespan.public_key]] = replace(first, warnings=(*first.warnings, note))
            continue
        allowed = IPSet.of((*kubespan.additional_addresses, *record.addresses))
        allowed -= IPSet.of(kubespan.exclude_advertised_addresses)
        if kubespan.address is not None:
            # Added after the exclusion: the mesh address must stay routable whatever a
            # node excludes.
            allowed |= IPSet.of([kubespan.address])
        overlap, owners = claimed.overlapping(allowed)
        warnings: list[str] = []
        if overlap:
            allowed -= overlap
            warnings.append(
                f"peer address overlap: {', '.join(map(str, overlap.prefixes()))} "
                f"already routed to {', '.join(owners)}"
            )
            if not allowed:
                warnings.append("conflict resolution removed all allowed IPs")
        claimed.add(allowed, label)
        by_key[kubespan.public_key] = len(specs)
        specs.append(
            PeerSpec(
                public_key=kubespan.public_key,
                node_id=record.node_id,
                label=label,
                address=kubespan.address,
                allowed_ips=allowed.prefixes(),
                endpoints=affiliate.endpoints,
                overlap=overlap.prefixes(),
                warnings=tuple(warnings),
            )
        )
    return specs


def filter_ips(ips: Sequence[IPAddress], filters: Sequence[EndpointFilter]) -> list[IPAddress]:
    """siderolabs/net FilterIPs: filters apply in order; `x` appends the IPs in x (dedup),
    `!x` removes those collected so far. The output order is thus the filter order."""
    result: list[IPAddress] = []
    for entry in filters:
        if entry.exclude:
            result = [ip for ip in result if ip not in entry.network]
        else:
            result.extend(ip for ip in ips if ip in entry.network and ip not in result)
    return result


def _endpoint_candidate(ip: IPAddress) -> bool:
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def local_endpoints(
    node_ips: Iterable[IPAddress], public_ips: Iterable[IPAddress], config: Config
) -> list[EndpointAddr]:
    """The endpoints this node publishes, in Talos' order (reference 1.3).

    Node IPs (less the mesh /64, loopback, link-local and multicast), then the public IPs
    the discovery service saw, then `mesh.endpoint_filters`, each at `mesh.port`; then
    `mesh.extra_endpoints`, deduplicated.
    """
    mesh_net = ula_prefix(config.cluster.id)
    ips: list[IPAddress] = []
    for ip in (*node_ips, *public_ips):
        if _endpoint_candidate(ip) and ip not in mesh_net and ip not in ips:
            ips.append(ip)
    if config.mesh.endpoint_filters:
        ips = filter_ips(ips, config.mesh.endpoint_filters)
    endpoints = [EndpointAddr(ip, config.mesh.port) for ip in ips]
    for extra in config.mesh.extra_endpoints:
        if extra not in endpoints:
            endpoints.append(extra)
    return endpoints
