"""Force routing: nftables marks traffic for peer addresses, a policy rule sends it to
table 180, whose default route is the mesh link (reference 4.1, 4.2).

Packet walk: a packet to a peer address gets mark 0x40 -> rule 32500 (before `main` at
32766) -> table 180 -> `dev kubespan` -> WireGuard picks the peer by AllowedIPs. WireGuard's
own UDP carries mark 0x20 and is accepted untouched, so it takes the main table: no loop
even when a peer's endpoint is itself inside the set.

We own table `inet kubespan`, not Talos' `inet talos`, so both can coexist on one host.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network

from kubespan.peers import IPSet
from membership.record import IPNetwork

TABLE = "kubespan"
FWMARK_WG = 0x20
"""Set by WireGuard on its encrypted UDP (the device's fwmark)."""
FWMARK_FORCE = 0x40
"""Set by us on traffic that must go through the mesh."""
FWMARK_MASK = 0x60
ROUTING_TABLE = 180
RULE_PRIORITY = 32500

# MSS = MTU - IP header (20 / 40) - TCP header (20) - options (12).
_MSS_OVERHEAD = {4: 52, 6: 72}


def _mark_ops() -> str:
    # Only the two mask bits are read or written, so marks used by Calico (0xffff0000),
    # Cilium (0xf00) or Flannel (0x4000) survive (Talos commit 644e803ad).
    keep = 0xFFFFFFFF & ~FWMARK_MASK
    return f"meta mark set meta mark & {keep:#010x} | {FWMARK_FORCE:#010x} accept"


def _set(networks: Iterable[IPNetwork]) -> str:
    return "{ " + ", ".join(str(n) for n in networks) + " }"


def routed_sets(
    networks: Iterable[IPNetwork], mesh_prefix: IPv6Network
) -> tuple[tuple[IPv4Network, ...], tuple[IPv6Network, ...]]:
    """Minimal covers of `networks` per family, minus the mesh /64.

    The mesh /64 is excluded because the link's connected route already carries it: marking
    it too would only add a useless lookup (Talos v1.13, commit 1e7e87fb1).
    """
    prefixes = (IPSet.of(networks) - IPSet.of([mesh_prefix])).prefixes()
    v4 = tuple(n for n in prefixes if isinstance(n, IPv4Network))
    v6 = tuple(n for n in prefixes if isinstance(n, IPv6Network))
    return v4, v6


def render_ruleset(
    networks: Iterable[IPNetwork], *, mtu: int, mesh_prefix: IPv6Network, table: str = TABLE
) -> str:
    """An `nft -f` script that atomically replaces table `inet <table>`.

    `networks` are the AllowedIPs to force into the mesh (all peers with force routing,
    else only `up` peers). A family's rules are left out when its set is empty: nft
    rejects empty anonymous sets, and an empty match must not clamp all traffic.
    """
    v4, v6 = routed_sets(networks, mesh_prefix)
    present = [(fam, _set(nets), ver) for fam, nets, ver in (("ip", v4, 4), ("ip6", v6, 6)) if nets]
    skip_wg = f"meta mark & {FWMARK_MASK:#010x} == {FWMARK_WG:#010x} accept"
    mark = _mark_ops()
    prerouting = [skip_wg, *(f"{fam} daddr {elements} {mark}" for fam, elements, _ in present)]
    outgoing = [skip_wg, 'oifname "lo" accept']
    for fam, elements, ver in present:
        mss = mtu - _MSS_OVERHEAD[ver]
        outgoing.append(
            f"{fam} daddr {elements} tcp flags & (syn | rst) == syn "
            f"tcp option maxseg size > {mss} tcp option maxseg size set {mss}"
        )
    outgoing.extend(f"{fam} daddr {elements} {mark}" for fam, elements, _ in present)
    lines = [
        "# kubespan force routing; generated, replaced as one transaction.",
        # `add` then `delete` makes the delete valid whether or not the table exists, and
        # the whole file is one nft transaction: no window without rules.
        f"add table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        "\tchain prerouting {",
        "\t\ttype filter hook prerouting priority filter; policy accept;",
        *(f"\t\t{rule}" for rule in prerouting),
        "\t}",
        "\tchain outgoing {",
        "\t\ttype route hook output priority filter; policy accept;",
        *(f"\t\t{rule}" for rule in outgoing),
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def delete_ruleset(table: str = TABLE) -> str:
    """An `nft -f` script removing our table; succeeds whether or not it exists."""
    return f"add table inet {table}\ndelete table inet {table}\n"


def ip_rule_argvs(action: str = "add", *, ip: str = "ip") -> list[list[str]]:
    """`ip rule` commands (both families) sending marked traffic to table 180.

    `ip rule add` is not idempotent: check `ip rule show` or `del` first.
    """
    if action not in ("add", "del"):
        raise ValueError(f"action must be add or del, not {action!r}")
    mark = f"{FWMARK_FORCE:#x}/{FWMARK_MASK:#x}"
    where = ["fwmark", mark, "table", str(ROUTING_TABLE), "priority", str(RULE_PRIORITY)]
    return [[ip, family, "rule", action, *where] for family in ("-4", "-6")]


def ip_route_argvs(interface: str, mtu: int, *, ip: str = "ip") -> list[list[str]]:
    """Idempotent `ip route replace` commands: default via the mesh link in table 180."""
    route = ["default", "dev", interface, "table", str(ROUTING_TABLE), "metric", "1"]
    options = ["mtu", str(mtu), "proto", "static"]
    return [[ip, family, "route", "replace", *route, *options] for family in ("-4", "-6")]
