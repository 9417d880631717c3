"""Merging affiliates seen through several discovery services, and deriving cluster members.

Follows Talos: `AffiliateSpec.Merge` (pkg/machinery/resources/cluster/affiliate.go) as run by
AffiliateMergeController, then MemberController (a member is an affiliate with a nodename).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from membership.record import (
    AffiliateRecord,
    DecodedAffiliate,
    IPAddress,
    KubeSpanInfo,
)

_T = TypeVar("_T")

# Talos parses machine_type into an enum and never lets "unknown" overwrite a known type.
_UNKNOWN_MACHINE_TYPES = frozenset({"", "unknown"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A cluster member: an affiliate that has a Kubernetes node name."""

    nodename: str
    node_id: str
    addresses: tuple[IPAddress, ...] = ()
    hostname: str = ""
    machine_type: str = ""
    operating_system: str = ""
    api_server_port: int | None = None


def _union(first: Sequence[_T], second: Iterable[_T]) -> tuple[_T, ...]:
    # Keeps first-seen order and appends only new items, as Merge's nested loops do.
    out = list(first)
    seen = set(out)
    for item in second:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return tuple(out)


def _merge_kubespan(base: KubeSpanInfo | None, other: KubeSpanInfo | None) -> KubeSpanInfo | None:
    if other is None:
        return base
    if base is None:
        base = KubeSpanInfo(public_key="")
    return KubeSpanInfo(
        public_key=other.public_key or base.public_key,
        address=other.address if other.address is not None else base.address,
        additional_addresses=_union(base.additional_addresses, other.additional_addresses),
        exclude_advertised_addresses=_union(
            base.exclude_advertised_addresses, other.exclude_advertised_addresses
        ),
    )


def _merge(base: DecodedAffiliate, other: DecodedAffiliate) -> DecodedAffiliate:
    # Lists are unioned in first-seen order; later non-empty scalars overwrite earlier ones.
    a, b = base.record, other.record
    record = AffiliateRecord(
        node_id=a.node_id,
        addresses=_union(a.addresses, b.addresses),
        hostname=b.hostname or a.hostname,
        nodename=b.nodename or a.nodename,
        machine_type=(
            a.machine_type if b.machine_type in _UNKNOWN_MACHINE_TYPES else b.machine_type
        ),
        # Talos does not merge the OS string, so the base's stays; we only let it fill a blank.
        operating_system=a.operating_system or b.operating_system,
        kubespan=_merge_kubespan(a.kubespan, b.kubespan),
        api_server_port=b.api_server_port if b.api_server_port is not None else a.api_server_port,
    )
    return DecodedAffiliate(record=record, endpoints=_union(base.endpoints, other.endpoints))


def merge_affiliates(sources: Sequence[Iterable[DecodedAffiliate]]) -> dict[str, DecodedAffiliate]:
    """Merge by node_id in source order as Talos' AffiliateSpec.Merge; skips empty node_ids."""
    # The first record seen is the base and later ones fold into it (see _merge for the rules),
    # so the order of `sources` decides which scalars win.
    merged: dict[str, DecodedAffiliate] = {}
    for source in sources:
        for affiliate in source:
            node_id = affiliate.record.node_id
            if not node_id:
                # Nothing identifies such a record, and Talos has no resource ID to give it.
                continue
            current = merged.get(node_id)
            merged[node_id] = affiliate if current is None else _merge(current, affiliate)
    return merged


def members(affiliates: Iterable[DecodedAffiliate]) -> list[Member]:
    """One Member per non-empty nodename, sorted by nodename; on a clash the top node_id wins."""
    # A reinstalled node (new node ID, same nodename) coexists with its stale record for up to a
    # TTL. Talos lists affiliates by ID and the last write to the nodename wins; do the same.
    by_nodename: dict[str, AffiliateRecord] = {}
    for record in sorted((a.record for a in affiliates), key=lambda r: r.node_id):
        if record.nodename:
            by_nodename[record.nodename] = record
    return [
        Member(
            nodename=nodename,
            node_id=record.node_id,
            addresses=record.addresses,
            hostname=record.hostname,
            machine_type=record.machine_type,
            operating_system=record.operating_system,
            api_server_port=record.api_server_port,
        )
        for nodename, record in sorted(by_nodename.items())
    ]
