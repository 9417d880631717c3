"""KubeSpan mesh addressing: the cluster's ULA /64, each node's EUI-64 address in it, and
the host's own links and addresses as `ip -j` reports them.

Byte-for-byte Talos (reference/talos-kubespan.md 2.2), so our nodes and Talos nodes agree
on every KubeSpan address of a mixed cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address

from membership.record import IPAddress

ULA_KUBESPAN = 0x02
"""Talos' ULA purpose byte for KubeSpan (0x01 bootstrap, 0x03 SideroLink, 0x04 virtual)."""

_ZERO_MAC = bytes(6)


class AddressingError(ValueError):
    """No usable MAC, a malformed MAC, or unparsable `ip -j link` output."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkInfo:
    """One network link as `ip -j -d link show` reports it."""

    name: str
    link_type: str
    mac: str | None
    kind: str | None = None

    @property
    def physical(self) -> bool:
        # Talos: an ethernet link with no driver kind (veth, bridge, dummy, ...) is hardware.
        # `kind` only appears with `ip -d`; without it every ethernet link looks physical.
        return self.link_type == "ether" and self.kind is None


def ula_prefix(cluster_id: str, purpose: int = ULA_KUBESPAN) -> IPv6Network:
    """The cluster's /64: fd | sha256(cluster_id)[17:23] | purpose."""
    digest = bytearray(hashlib.sha256(cluster_id.encode()).digest()[16:24])
    digest[0] = 0xFD
    digest[7] = purpose
    return IPv6Network((bytes(digest) + bytes(8), 64))


def parse_mac(mac: str) -> bytes:
    """The 6 bytes of a colon-separated MAC; raises AddressingError otherwise."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise AddressingError(f"not an EUI-48 MAC address: {mac!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise AddressingError(f"not an EUI-48 MAC address: {mac!r}") from None


def eui64_address(prefix: IPv6Network, mac: str) -> IPv6Address:
    """The address in `prefix` (a /64) whose interface id is the modified EUI-64 of `mac`."""
    if prefix.prefixlen != 64:
        raise AddressingError(f"EUI-64 needs a /64 prefix, got {prefix}")
    raw = parse_mac(mac)
    # RFC 4291 appendix A: flip the universal/local bit and put ff:fe in the middle.
    interface_id = bytes([raw[0] ^ 0x02]) + raw[1:3] + b"\xff\xfe" + raw[3:6]
    return IPv6Address(prefix.network_address.packed[:8] + interface_id)


def kubespan_address(cluster_id: str, mac: str) -> IPv6Address:
    """This node's KubeSpan address, from the cluster id and its first MAC."""
    return eui64_address(ula_prefix(cluster_id), mac)


def parse_ip_link_json(text: str) -> list[LinkInfo]:
    """Parse `ip -j -d link show`; raises AddressingError on malformed output."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AddressingError(f"ip -j link: invalid JSON: {exc}") from None
    if not isinstance(raw, list):
        raise AddressingError("ip -j link: expected a JSON array")
    links: list[LinkInfo] = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("ifname"), str):
            raise AddressingError(f"ip -j link: entry without ifname: {entry!r}")
        linkinfo = entry.get("linkinfo")
        kind = linkinfo.get("info_kind") if isinstance(linkinfo, dict) else None
        mac = entry.get("address")
        links.append(
            LinkInfo(
                name=entry["ifname"],
                link_type=str(entry.get("link_type", "")),
                mac=mac if isinstance(mac, str) else None,
                kind=kind if isinstance(kind, str) and kind else None,
            )
        )
    return links


def _usable_mac(link: LinkInfo) -> bool:
    if link.mac is None or link.link_type == "loopback":
        return False
    try:
        return parse_mac(link.mac) != _ZERO_MAC
    except AddressingError:
        # Infiniband and tunnels carry non-EUI-48 addresses; they cannot seed EUI-64.
        return False


def first_mac(links: Sequence[LinkInfo]) -> str:
    """MAC of the first physical link by name, else of the first non-loopback link with one.

    The fallback covers network namespaces that only hold veth links. Raises AddressingError
    when no link has a usable MAC.
    """
    candidates = sorted((link for link in links if _usable_mac(link)), key=lambda x: x.name)
    chosen = next((link for link in candidates if link.physical), None)
    if chosen is None and candidates:
        chosen = candidates[0]
    if chosen is None or chosen.mac is None:
        raise AddressingError("no network link with a MAC address to derive the KubeSpan address")
    return chosen.mac.lower()


@dataclass(frozen=True, slots=True)
class AddressInfo:
    """What `ip -j -d addr show` says about one address."""

    link: str
    address: IPAddress
    prefixlen: int


def parse_ip_addr_json(text: str) -> list[AddressInfo]:
    """Global-scope addresses on up, non-loopback links, in kernel order; ValueError if malformed.

    Kernel order matters: it is the order addresses were added, which is the order endpoints
    are published and tried (reference 1.3).
    """
    try:
        links = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"ip -j addr: invalid JSON: {exc}") from None
    if not isinstance(links, list):
        raise ValueError("ip -j addr: expected a JSON array")
    out: list[AddressInfo] = []
    for link in links:
        if not isinstance(link, dict):
            raise ValueError(f"ip -j addr: bad entry {link!r}")
        flags = link.get("flags") or []
        if "UP" not in flags or "LOOPBACK" in flags:
            continue
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or info.get("scope") != "global":
                continue
            if info.get("tentative") or info.get("dadfailed"):
                continue
            try:
                addr = ip_address(str(info.get("local")))
            except ValueError:
                continue
            out.append(AddressInfo(str(link.get("ifname")), addr, int(info.get("prefixlen", 0))))
    return out


def node_addresses(
    infos: Iterable[AddressInfo], *, exclude_links: Collection[str], mesh_prefix: IPv6Network
) -> list[IPAddress]:
    """The node's own routed IPs: what it publishes as addresses and endpoint candidates."""
    out: list[IPAddress] = []
    for info in infos:
        if info.link in exclude_links or info.address in out:
            continue
        if isinstance(info.address, IPv6Address) and info.address in mesh_prefix:
            continue
        if info.address.is_link_local or info.address.is_loopback:
            continue
        out.append(info.address)
    return out
