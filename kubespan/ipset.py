"""Sets of IP addresses as sorted integer ranges, and the claims peers make on them.

IPSet is Go's netipx.IPSet in miniature: union, difference and intersection are linear merges
and the CIDR cover is exact. Claims records who was given which addresses first.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv6Address,
    ip_network,
    summarize_address_range,
)

from membership.record import IPAddress, IPNetwork

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

    def size(self, version: int) -> int:
        """How many addresses of IP `version` the set holds."""
        return sum(hi - lo + 1 for lo, hi in (self.v4 if version == 4 else self.v6))

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


class Claims:
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

    def take(self, wanted: IPSet, owner: str) -> tuple[IPSet, IPSet, list[str]]:
        """Give `owner` what nobody has yet: (given, already taken, who took it)."""
        taken, owners = self.overlapping(wanted)
        given = wanted - taken
        self.add(given, owner)
        return given, taken, owners
