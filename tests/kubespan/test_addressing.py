from __future__ import annotations

import json
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from kubespan.addressing import (
    AddressingError,
    LinkInfo,
    eui64_address,
    first_mac,
    kubespan_address,
    node_addresses,
    parse_ip_addr_json,
    parse_ip_link_json,
    parse_mac,
    ula_prefix,
)

FIXTURES = Path(__file__).parent / "fixtures"

# Reference 2.2.3: vectors from the Talos tests.
TALOS_CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="


def test_talos_prefix_vector() -> None:
    assert ula_prefix(TALOS_CLUSTER_ID) == IPv6Network("fd7f:175a:b97c:5602::/64")


@pytest.mark.parametrize(
    ("mac", "address"),
    [
        ("2e:1a:b6:53:81:69", "fd7f:175a:b97c:5602:2c1a:b6ff:fe53:8169"),
        ("ea:71:1b:b2:cc:ee", "fd7f:175a:b97c:5602:e871:1bff:feb2:ccee"),
    ],
)
def test_talos_address_vectors(mac: str, address: str) -> None:
    assert kubespan_address(TALOS_CLUSTER_ID, mac) == IPv6Address(address)


def test_prefix_purpose_byte() -> None:
    sidero_link = ula_prefix(TALOS_CLUSTER_ID, purpose=0x03)
    assert sidero_link == IPv6Network("fd7f:175a:b97c:5603::/64")


def test_prefix_is_deterministic_and_cluster_specific() -> None:
    assert ula_prefix("a") == ula_prefix("a")
    assert ula_prefix("a") != ula_prefix("b")
    assert ula_prefix("a").network_address.packed[0] == 0xFD


def test_eui64_flips_universal_local_bit() -> None:
    prefix = IPv6Network("fd00::/64")
    assert eui64_address(prefix, "00:11:22:33:44:55") == IPv6Address("fd00::211:22ff:fe33:4455")
    assert eui64_address(prefix, "02:11:22:33:44:55") == IPv6Address("fd00::11:22ff:fe33:4455")


def test_eui64_needs_a_64() -> None:
    with pytest.raises(AddressingError, match="/64"):
        eui64_address(IPv6Network("fd00::/48"), "00:11:22:33:44:55")


@pytest.mark.parametrize("mac", ["", "00:11:22:33:44", "00:11:22:33:44:5g", "0011.2233.4455"])
def test_parse_mac_rejects(mac: str) -> None:
    with pytest.raises(AddressingError):
        parse_mac(mac)


def test_parse_mac_is_case_insensitive() -> None:
    assert parse_mac("AA:bb:0C:00:00:01") == bytes.fromhex("aabb0c000001")


def test_parse_host_ip_link() -> None:
    links = parse_ip_link_json((FIXTURES / "ip-link-host.json").read_text())
    assert [(link.name, link.physical) for link in links] == [
        ("lo", False),
        ("ifb0", False),
        ("ifb1", False),
        ("eth0", True),
    ]
    assert links[3].mac == "02:fc:00:00:00:01"
    assert links[1].kind == "ifb"


def test_first_mac_prefers_physical_over_earlier_virtual_links() -> None:
    links = parse_ip_link_json((FIXTURES / "ip-link-host.json").read_text())
    assert first_mac(links) == "02:fc:00:00:00:01"


def test_first_mac_falls_back_to_first_named_link_in_a_netns() -> None:
    links = parse_ip_link_json((FIXTURES / "ip-link-netns.json").read_text())
    assert not any(link.physical for link in links)
    # br0 < veth-a < veth-b; loopback is never a candidate.
    assert first_mac(links) == "b6:80:57:46:e4:92"


def test_first_mac_sorts_physical_links_by_name() -> None:
    links = [
        LinkInfo(name="eth1", link_type="ether", mac="00:00:00:00:00:02"),
        LinkInfo(name="eth0", link_type="ether", mac="00:00:00:00:00:01"),
        LinkInfo(name="a-veth", link_type="ether", mac="00:00:00:00:00:03", kind="veth"),
    ]
    assert first_mac(links) == "00:00:00:00:00:01"


def test_first_mac_skips_zero_and_non_ethernet_addresses() -> None:
    links = [
        LinkInfo(name="a", link_type="ether", mac="00:00:00:00:00:00"),
        LinkInfo(name="b", link_type="none", mac=None),
        LinkInfo(name="c", link_type="infiniband", mac="80:00:00:48:fe:80" + ":00" * 14),
        LinkInfo(name="d", link_type="ether", mac="AA:00:00:00:00:01", kind="veth"),
    ]
    assert first_mac(links) == "aa:00:00:00:00:01"


def test_first_mac_without_candidates() -> None:
    links = [LinkInfo(name="lo", link_type="loopback", mac="00:00:00:00:00:00")]
    with pytest.raises(AddressingError, match="no network link"):
        first_mac(links)


@pytest.mark.parametrize("text", ["", "{}", "[1]", '[{"mtu": 1}]'])
def test_parse_ip_link_rejects_garbage(text: str) -> None:
    with pytest.raises(AddressingError):
        parse_ip_link_json(text)


def test_parse_ip_link_without_details_has_no_kind() -> None:
    links = parse_ip_link_json('[{"ifname": "veth0", "link_type": "ether", "address": "x"}]')
    assert links == [LinkInfo(name="veth0", link_type="ether", mac="x", kind=None)]


PREFIX = IPv6Network("fd7f:175a:b97c:5602::/64")
ADDRESS = IPv6Address("fd7f:175a:b97c:5602:2c1a:b6ff:fe53:8169")

IP_ADDR = [
    {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "addr_info": [
        {"local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
    {"ifname": "eth0", "flags": ["BROADCAST", "UP"], "addr_info": [
        {"local": "10.98.0.11", "prefixlen": 32, "scope": "global"},
        {"local": "10.99.0.11", "prefixlen": 24, "scope": "global"},
        {"local": "fe80::1", "prefixlen": 64, "scope": "link"},
        {"local": "2001:db8::1", "prefixlen": 64, "scope": "global", "tentative": True},
        {"local": "2001:db8::2", "prefixlen": 64, "scope": "global"}]},
    {"ifname": "eth1", "flags": ["BROADCAST"], "addr_info": [
        {"local": "192.0.2.1", "prefixlen": 24, "scope": "global"}]},
    {"ifname": "kubespan", "flags": ["POINTOPOINT", "UP"], "addr_info": [
        {"local": str(ADDRESS), "prefixlen": 64, "scope": "global"}]},
    {"ifname": "other", "flags": ["UP"], "addr_info": [
        {"local": "fd7f:175a:b97c:5602::9", "prefixlen": 64, "scope": "global"},
        {"local": "10.99.0.11", "prefixlen": 24, "scope": "global"}]},
]  # fmt: skip


def test_node_addresses_keep_kernel_order() -> None:
    infos = parse_ip_addr_json(json.dumps(IP_ADDR))
    assert [str(i.address) for i in infos] == [
        "10.98.0.11", "10.99.0.11", "2001:db8::2", str(ADDRESS),
        "fd7f:175a:b97c:5602::9", "10.99.0.11",
    ]  # fmt: skip
    ips = node_addresses(infos, exclude_links={"kubespan"}, mesh_prefix=PREFIX)
    assert [str(ip) for ip in ips] == ["10.98.0.11", "10.99.0.11", "2001:db8::2"]


@pytest.mark.parametrize("text", ["not json", "{}", "[1]"])
def test_parse_ip_addr_json_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="ip -j addr"):
        parse_ip_addr_json(text)
