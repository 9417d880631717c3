"""Desired WireGuard peers from discovered affiliates (Talos PeerSpecController), and the
endpoints this node publishes about itself (Talos LocalAffiliateController).

Unlike Talos, a record's claims are not taken on trust: peer_rules.py refuses unusable keys,
endpoints and routes, and build_peers() decides contested addresses so that no member can take
another node's addresses or tunnel (docs/operations.md, "Hostile members").
See reference/talos-kubespan.md 1.3 and 3.2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from kubespan.addressing import ula_prefix
from kubespan.config import Config, EndpointFilter
from kubespan.ipset import Claims, IPSet, cidr_cover
from kubespan.peer_rules import ClaimRules, additional_networks, key_problem
from membership.record import (
    AffiliateRecord,
    DecodedAffiliate,
    EndpointAddr,
    IPAddress,
    IPNetwork,
)

__all__ = [
    "IPSet",
    "PeerSet",
    "PeerSpec",
    "Refused",
    "build_peers",
    "cidr_cover",
    "filter_ips",
    "local_endpoints",
    "peer_specs",
]


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
    """Addresses this peer published but another peer keeps (see build_peers)."""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A record that is not made a peer, and why; `kubespan status` lists them."""

    node_id: str
    label: str
    reason: str


@dataclass(frozen=True, slots=True)
class PeerSet:
    """The desired peers in node id order, and the records refused as peers."""

    specs: tuple[PeerSpec, ...]
    refused: tuple[Refused, ...] = ()


@dataclass(slots=True)
class _Candidate:
    """One public key's claims, from every record that publishes it (primary first)."""

    key: str
    records: list[AffiliateRecord]
    address: IPv6Address | None
    owned: IPSet
    """Node addresses and the mesh address: what identifies a node."""
    additional: IPSet
    endpoints: tuple[EndpointAddr, ...]
    before: IPSet
    """What this key was given on the previous pass: an incumbent keeps it."""
    warnings: list[str]
    given: IPSet = field(default_factory=IPSet)
    lost: IPSet = field(default_factory=IPSet)
    owners: list[str] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return self.records[0].node_id

    @property
    def label(self) -> str:
        return _label(self.records[0])


def _label(record: AffiliateRecord) -> str:
    return record.nodename or record.hostname or record.node_id


def _candidate(
    key: str,
    affiliates: list[DecodedAffiliate],
    before: PeerSpec | None,
    rules: ClaimRules,
    never: IPSet,
) -> _Candidate:
    if before is not None:
        # The record that had this key on the previous pass stays its primary.
        affiliates.sort(key=lambda a: a.record.node_id != before.node_id)
    owned, additional, address = IPSet(), IPSet(), None
    endpoints: list[EndpointAddr] = []
    warnings: list[str] = []
    for affiliate in affiliates:
        record, kubespan = affiliate.record, affiliate.record.kubespan
        assert kubespan is not None, "build_peers() only groups records with a key"
        excluded = IPSet.of(kubespan.exclude_advertised_addresses)
        kept, refused = additional_networks(kubespan.additional_addresses, never)
        if refused:
            warnings.append(f"refused routes (wider than allowed): {', '.join(map(str, refused))}")
        additional |= kept - excluded
        owned |= IPSet.of(record.addresses) - excluded - never
        mesh = rules.mesh_address(kubespan.address)
        if mesh is None and kubespan.address is not None:
            warnings.append(f"mesh address {kubespan.address} not routed: outside the mesh or ours")
        if mesh is not None:
            # After the exclusion: the mesh address stays routable whatever a node excludes.
            owned |= IPSet.of([mesh])
            address = address or mesh
        usable, ignored = rules.endpoints(affiliate.endpoints)
        if ignored:
            warnings.append(f"ignored {ignored} unusable endpoint(s) of node {record.node_id}")
        endpoints.extend(e for e in usable if e not in endpoints)
        if affiliate is not affiliates[0]:
            warnings.append(
                f"public key also published by node {record.node_id} ({_label(record)}); "
                "its routes go to this peer"
            )
    return _Candidate(
        key=key,
        records=[a.record for a in affiliates],
        address=address,
        owned=owned,
        additional=additional - owned,
        endpoints=tuple(endpoints),
        before=IPSet.of(before.allowed_ips) if before is not None else IPSet(),
        warnings=warnings,
    )


def build_peers(
    self_node_id: str,
    affiliates: Iterable[DecodedAffiliate],
    config: Config,
    *,
    own_key: str = "",
    own_addresses: Iterable[IPAddress] = (),
    discovery: Iterable[IPAddress] = (),
    previous: Iterable[PeerSpec] = (),
) -> PeerSet:
    """Desired peers in node id order (Talos' PeerSpecController), hostile claims contained.

    AllowedIPs = (additional addresses | addresses) - excluded + mesh address, within the
    rules of peer_rules.py. WireGuard routes each address to one peer, so a contested address
    is resolved in two tiers: node and mesh addresses first, then additional networks (a
    node's own address beats anyone's routed network). Within a tier, what a key was given on
    the previous pass (`previous`) stays with it while it still claims it; the rest goes to
    the lowest node id. Losses are reported in `overlap`/`warnings`. Records sharing a public
    key are one peer, so a copied key never removes the real node's tunnel.
    """
    rules = ClaimRules(
        ula_prefix(config.cluster.id), own=frozenset(own_addresses), discovery=frozenset(discovery)
    )
    refused: list[Refused] = []
    groups: dict[str, list[DecodedAffiliate]] = {}
    others: list[AffiliateRecord] = []
    for affiliate in sorted(affiliates, key=lambda a: a.record.node_id):
        record, kubespan = affiliate.record, affiliate.record.kubespan
        if record.node_id == self_node_id:
            continue
        if kubespan is None or not kubespan.public_key:
            others.append(record)
            continue
        key = kubespan.public_key
        problem = "public key is this node's own" if key == own_key else key_problem(key)
        if problem is not None:
            refused.append(Refused(node_id=record.node_id, label=_label(record), reason=problem))
            others.append(record)
            continue
        groups.setdefault(key, []).append(affiliate)
    before = {spec.public_key: spec for spec in previous}
    never = rules.never_routed()
    candidates = sorted(
        (_candidate(key, group, before.get(key), rules, never) for key, group in groups.items()),
        key=lambda c: c.node_id,
    )
    claims = Claims()
    _resolve(claims, candidates, lambda c: c.owned)
    # Nodes that are not peers (no KubeSpan, refused) still own their addresses: nobody's
    # routed network may swallow them. They do not compete for node addresses, or a record
    # with a broken key could take a real node's address away from it.
    for record in others:
        claims.take(IPSet.of(record.addresses) - never, _label(record))
    _resolve(claims, candidates, lambda c: c.additional)
    return PeerSet(tuple(_spec(c) for c in candidates), tuple(refused))


def _resolve(
    claims: Claims, candidates: Sequence[_Candidate], tier: Callable[[_Candidate], IPSet]
) -> None:
    for c in candidates:  # incumbents keep what they had
        given, _, _ = claims.take(tier(c) & c.before, c.label)
        c.given |= given
    for c in candidates:  # then the lowest node id
        given, lost, owners = claims.take(tier(c) - c.given, c.label)
        c.given, c.lost = c.given | given, c.lost | lost
        c.owners.extend(o for o in owners if o not in c.owners)


def _spec(c: _Candidate) -> PeerSpec:
    warnings = list(c.warnings)
    if c.lost:
        warnings.append(
            f"peer address overlap: {', '.join(map(str, c.lost.prefixes()))} "
            f"already routed to {', '.join(c.owners)}"
        )
        if not c.given:
            warnings.append("conflict resolution removed all allowed IPs")
    return PeerSpec(
        public_key=c.key,
        node_id=c.node_id,
        label=c.label,
        address=c.address,
        allowed_ips=c.given.prefixes(),
        endpoints=c.endpoints,
        overlap=c.lost.prefixes(),
        warnings=tuple(warnings),
    )


def peer_specs(
    self_node_id: str, affiliates: Iterable[DecodedAffiliate], config: Config
) -> list[PeerSpec]:
    """build_peers() without history or refusals: the desired peers in node id order."""
    return list(build_peers(self_node_id, affiliates, config).specs)


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
