from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    collapse_addresses,
    ip_address,
    ip_network,
)

from hypothesis import given, settings
from hypothesis import strategies as st

from kubespan.addressing import kubespan_address, ula_prefix
from kubespan.config import Config, load_config
from kubespan.peers import IPSet, PeerSpec, cidr_cover, filter_ips, local_endpoints, peer_specs
from membership.record import (
    AffiliateRecord,
    DecodedAffiliate,
    EndpointAddr,
    IPAddress,
    IPNetwork,
    KubeSpanInfo,
)

CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = base64.b64encode(bytes(32)).decode()


def make_config(mesh: str = "") -> Config:
    return load_config(
        f"cluster: {{id: '{CLUSTER_ID}', secret: '{SECRET}'}}\n"
        "discovery: {endpoints: ['http://d:1']}\n" + (f"mesh: {mesh}\n" if mesh else "")
    )


CONFIG = make_config()


def ula(n: int) -> IPv6Address:
    return kubespan_address(CLUSTER_ID, f"02:00:00:00:00:{n:02x}")


def K(name: str) -> str:
    """A valid WireGuard public key named `name` (peer building refuses malformed keys)."""
    return base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()


def affiliate(
    node_id: str,
    *,
    key: str | None = None,
    addresses: Iterable[str] = (),
    additional: Iterable[str] = (),
    exclude: Iterable[str] = (),
    endpoints: Iterable[str] = (),
    nodename: str = "",
    hostname: str = "",
    address: IPv6Address | None = None,
) -> DecodedAffiliate:
    kubespan = None
    if key is not None:
        kubespan = KubeSpanInfo(
            public_key=K(key) if key else key,
            address=address,
            additional_addresses=tuple(ip_network(a, strict=False) for a in additional),
            exclude_advertised_addresses=tuple(ip_network(e) for e in exclude),
        )
    record = AffiliateRecord(
        node_id=node_id,
        addresses=tuple(ip_address(a) for a in addresses),
        nodename=nodename,
        hostname=hostname,
        kubespan=kubespan,
    )
    return DecodedAffiliate(record=record, endpoints=tuple(ep(e) for e in endpoints))


def ep(text: str) -> EndpointAddr:
    host, _, port = text.rpartition(":")
    return EndpointAddr(ip_address(host.strip("[]")), int(port))


def nets(*texts: str) -> tuple[IPNetwork, ...]:
    return tuple(ip_network(t) for t in texts)


# --- peer_specs ------------------------------------------------------------------------------


def test_reference_example() -> None:
    # reference 3.2: additional 10.244.3.1/24 + 10.244.3.0/32, exclude 10.244.3.128/25,
    # address 192.168.3.4 -> [10.244.3.0/25, 192.168.3.4/32, <ula>/128].
    peer = affiliate(
        "node-b",
        key="pk-b",
        addresses=["192.168.3.4"],
        additional=["10.244.3.1/24", "10.244.3.0/32"],
        exclude=["10.244.3.128/25"],
        address=ula(3),
        nodename="worker-3",
        endpoints=["192.168.3.4:51820", "[2001:db8::3]:51820"],
    )
    [spec] = peer_specs("node-a", [peer], CONFIG)
    assert spec == PeerSpec(
        public_key=K("pk-b"),
        node_id="node-b",
        label="worker-3",
        address=ula(3),
        allowed_ips=(
            ip_network("10.244.3.0/25"),
            ip_network("192.168.3.4/32"),
            ip_network(f"{ula(3)}/128"),
        ),
        endpoints=(ep("192.168.3.4:51820"), ep("[2001:db8::3]:51820")),
    )


def test_skips_self_and_records_without_kubespan() -> None:
    specs = peer_specs(
        "me",
        [
            affiliate("me", key="pk-me"),
            affiliate("no-ks"),
            affiliate("empty-key", key=""),
            affiliate("peer", key="pk-peer"),
        ],
        CONFIG,
    )
    assert [s.node_id for s in specs] == ["peer"]


def test_sorted_by_node_id_and_label_fallbacks() -> None:
    specs = peer_specs(
        "me",
        [
            affiliate("c", key="k3"),
            affiliate("a", key="k1", nodename="n-a", hostname="h-a"),
            affiliate("b", key="k2", hostname="h-b"),
        ],
        CONFIG,
    )
    assert [(s.node_id, s.label) for s in specs] == [("a", "n-a"), ("b", "h-b"), ("c", "c")]


def test_endpoints_keep_published_order() -> None:
    published = ["10.0.0.9:51820", "[2001:db8::1]:51820", "10.0.0.1:4000"]
    [spec] = peer_specs("me", [affiliate("p", key="k", endpoints=published)], CONFIG)
    assert spec.endpoints == tuple(ep(e) for e in published)


def test_ula_survives_exclusion() -> None:
    [spec] = peer_specs(
        "me", [affiliate("p", key="k", address=ula(1), exclude=["::/0", "0.0.0.0/0"])], CONFIG
    )
    assert spec.allowed_ips == (ip_network(f"{ula(1)}/128"),)


def test_overlap_goes_to_the_lower_node_id() -> None:
    vip = "192.168.1.100"
    specs = peer_specs(
        "me",
        [
            affiliate("b", key="kb", addresses=["192.168.1.2", vip], nodename="nb"),
            affiliate("a", key="ka", addresses=["192.168.1.1", vip], additional=["10.1.0.0/16"]),
            affiliate("c", key="kc", addresses=[vip], additional=["10.1.2.0/24", "10.2.0.0/16"]),
        ],
        CONFIG,
    )
    a, b, c = specs
    assert a.allowed_ips == nets("10.1.0.0/16", "192.168.1.1/32", "192.168.1.100/32")
    assert a.overlap == () and a.warnings == ()
    assert b.allowed_ips == nets("192.168.1.2/32")
    assert b.overlap == nets("192.168.1.100/32")
    assert b.warnings == ("peer address overlap: 192.168.1.100/32 already routed to a",)
    assert c.allowed_ips == nets("10.2.0.0/16")
    assert c.overlap == nets("10.1.2.0/24", "192.168.1.100/32")
    assert "already routed to a" in c.warnings[0]


def test_overlap_that_removes_everything_is_still_a_peer() -> None:
    a = affiliate("a", key="ka", additional=["10.0.0.0/8"])
    b = affiliate("b", key="kb", additional=["10.1.1.0/24"])
    specs = peer_specs("me", [a, b], CONFIG)
    assert specs[1].allowed_ips == ()
    assert specs[1].warnings[-1] == "conflict resolution removed all allowed IPs"


def test_node_address_beats_a_lower_node_ids_routed_network() -> None:
    # Before hostile members were contained, "a" took 10.1.1.1 away from the node itself.
    a = affiliate("a", key="ka", additional=["10.0.0.0/8"])
    b = affiliate("b", key="kb", addresses=["10.1.1.1"])
    specs = peer_specs("me", [a, b], CONFIG)
    assert specs[1].allowed_ips == nets("10.1.1.1/32")
    assert ip_address("10.1.1.1") not in IPSet.of(specs[0].allowed_ips)
    assert "10.1.1.1/32 already routed to b" in specs[0].warnings[0]


def test_duplicate_public_key_is_one_peer() -> None:
    b = affiliate("b", key="same", addresses=["10.0.0.2"])
    a = affiliate("a", key="same", addresses=["10.0.0.1"])
    [spec] = peer_specs("me", [b, a], CONFIG)
    # One key is one WireGuard peer: the first record names it, and both records' addresses
    # stay routed to the key's holder (a copied key must not take the real node out).
    assert spec.node_id == "a" and spec.allowed_ips == nets("10.0.0.1/32", "10.0.0.2/32")
    assert "also published by node b" in spec.warnings[0]


def test_overlap_lookup_scales_to_the_server_limit() -> None:
    size = 1024
    peers = [
        affiliate(f"n{i:04d}", key=f"k{i}", addresses=[f"10.{i // 250}.{i % 250}.1", "10.255.0.1"])
        for i in range(size)
    ]
    specs = peer_specs("me", peers, CONFIG)
    assert len(specs) == size
    assert ip_network("10.255.0.1/32") in specs[0].allowed_ips
    assert all(s.overlap == nets("10.255.0.1/32") for s in specs[1:])


# --- IP set arithmetic -----------------------------------------------------------------------

V4_UNIVERSE = ip_network("10.0.0.0/26")
V6_UNIVERSE = ip_network("fd00::/122")


@st.composite
def small_networks(draw: st.DrawFn) -> IPNetwork:
    universe = draw(st.sampled_from([V4_UNIVERSE, V6_UNIVERSE]))
    prefix = draw(st.integers(universe.prefixlen, universe.max_prefixlen))
    offset = draw(st.integers(0, universe.num_addresses - 1))
    return ip_network((int(universe.network_address) + offset, prefix), strict=False)


network_lists = st.lists(small_networks(), max_size=8)


def addresses(networks: Iterable[IPNetwork]) -> set[IPAddress]:
    return {a for n in networks for a in n}


def assert_minimal_cover(cover: Sequence[IPNetwork]) -> None:
    # collapse_addresses is the oracle: its output is the canonical minimal cover.
    v4 = [n for n in cover if isinstance(n, IPv4Network)]
    v6 = [n for n in cover if isinstance(n, IPv6Network)]
    assert list(cover) == v4 + v6
    assert v4 == list(collapse_addresses(v4))
    assert v6 == list(collapse_addresses(v6))


@given(network_lists)
def test_cover_is_exact_and_minimal(networks: list[IPNetwork]) -> None:
    cover = cidr_cover(networks)
    assert addresses(cover) == addresses(networks)
    assert_minimal_cover(cover)


@given(network_lists, network_lists)
def test_difference_union_intersection(a: list[IPNetwork], b: list[IPNetwork]) -> None:
    sa, sb = IPSet.of(a), IPSet.of(b)
    assert addresses((sa - sb).prefixes()) == addresses(a) - addresses(b)
    assert addresses((sa | sb).prefixes()) == addresses(a) | addresses(b)
    assert addresses((sa & sb).prefixes()) == addresses(a) & addresses(b)
    assert bool(sa & sb) == bool(addresses(a) & addresses(b))
    assert_minimal_cover((sa - sb).prefixes())


@given(network_lists, st.integers(0, 63))
def test_membership(networks: list[IPNetwork], offset: int) -> None:
    probe = V4_UNIVERSE.network_address + offset
    assert (probe in IPSet.of(networks)) == (probe in addresses(networks))
    assert "10.0.0.1" not in IPSet.of(networks)


# Brute-force oracles are slow-ish; a loaded CI box must not trip the deadline.
@settings(deadline=None)
@given(st.lists(st.tuples(network_lists, network_lists), min_size=1, max_size=5))
def test_peer_overlap_resolution(peers: list[tuple[list[IPNetwork], list[IPNetwork]]]) -> None:
    affiliates = [
        affiliate(
            f"n{i}",
            key=f"k{i}",
            additional=[str(n) for n in extra],
            exclude=[str(n) for n in excluded],
        )
        for i, (extra, excluded) in enumerate(peers)
    ]
    specs = peer_specs("me", affiliates, CONFIG)
    claimed: set[IPAddress] = set()
    for spec, (extra, excluded) in zip(specs, peers, strict=True):
        wanted = addresses(extra) - addresses(excluded)
        assert addresses(spec.allowed_ips) == wanted - claimed
        assert addresses(spec.overlap) == wanted & claimed
        assert_minimal_cover(spec.allowed_ips)
        claimed |= wanted - claimed


# --- local endpoints -------------------------------------------------------------------------


def ips(*texts: str) -> list[IPAddress]:
    return [ip_address(t) for t in texts]


def test_local_endpoints_order_and_exclusions() -> None:
    own_ula = ula(7)
    node = ips("192.168.1.5", str(own_ula), "127.0.0.1", "fe80::1", "2001:db8::5", "192.168.1.5")
    public = ips("203.0.113.9", "192.168.1.5")
    assert local_endpoints(node, public, CONFIG) == [
        ep("192.168.1.5:51820"),
        ep("[2001:db8::5]:51820"),
        ep("203.0.113.9:51820"),
    ]


def test_local_endpoints_drop_the_whole_mesh_prefix() -> None:
    mesh_net: IPv6Network = ula_prefix(CLUSTER_ID)
    other = mesh_net.network_address + 5
    assert local_endpoints([other, IPv4Address("10.0.0.1")], [], CONFIG) == [ep("10.0.0.1:51820")]


def test_local_endpoints_use_mesh_port_filters_and_extras() -> None:
    config = make_config(
        "{port: 51821, endpoint_filters: ['192.168.0.0/16', '!192.168.2.0/24', '10.0.0.0/8'],"
        " extra_endpoints: ['203.0.113.1:4000', '10.1.1.1:51821', '[2001:db8::9]:1']}"
    )
    node = ips("10.1.1.1", "192.168.2.7", "2001:db8::5", "192.168.1.5")
    assert local_endpoints(node, ips("203.0.113.9"), config) == [
        # filter order, not discovery order, decides priority
        ep("192.168.1.5:51821"),
        ep("10.1.1.1:51821"),
        # extras are appended unfiltered, minus duplicates
        ep("203.0.113.1:4000"),
        ep("[2001:db8::9]:1"),
    ]


def test_filter_ips_is_talos_filterips() -> None:
    addrs = ips("10.0.0.1", "192.168.0.1", "2001:db8::1", "10.0.0.2")
    f = make_config("{endpoint_filters: ['!10.0.0.0/8', '0.0.0.0/0', '!10.0.0.2/32', '::/0']}")
    # A leading "!x" has nothing to remove yet; IPv6 never matches an IPv4 CIDR.
    assert filter_ips(addrs, f.mesh.endpoint_filters) == ips(
        "10.0.0.1", "192.168.0.1", "2001:db8::1"
    )
    assert filter_ips(addrs, ()) == []
