from __future__ import annotations

from ipaddress import IPv6Network, ip_network

import pytest

from kubespan.addressing import kubespan_address, ula_prefix
from kubespan.nft import (
    delete_ruleset,
    ip_route_argvs,
    ip_rule_argvs,
    render_ruleset,
    routed_sets,
)
from membership.record import IPNetwork

CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
MESH: IPv6Network = ula_prefix(CLUSTER_ID)
PEER_ULA = kubespan_address(CLUSTER_ID, "2e:1a:b6:53:81:69")


def nets(*texts: str) -> list[IPNetwork]:
    return [ip_network(t) for t in texts]


MARK = "meta mark set meta mark & 0xffffff9f | 0x00000040 accept"
SYN = "tcp flags & (syn | rst) == syn"
V4 = "ip daddr { 10.244.3.0/25, 192.168.3.4/32 }"
V6 = "ip6 daddr { 2001:db8::/64 }"


def clamp(mss: int) -> str:
    return f"{SYN} tcp option maxseg size > {mss} tcp option maxseg size set {mss}"


EXPECTED_FULL = f"""\
# kubespan force routing; generated, replaced as one transaction.
add table inet kubespan
delete table inet kubespan
table inet kubespan {{
\tchain prerouting {{
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tmeta mark & 0x00000060 == 0x00000020 accept
\t\t{V4} {MARK}
\t\t{V6} {MARK}
\t}}
\tchain outgoing {{
\t\ttype route hook output priority filter; policy accept;
\t\tmeta mark & 0x00000060 == 0x00000020 accept
\t\toifname "lo" accept
\t\t{V4} {clamp(1368)}
\t\t{V6} {clamp(1348)}
\t\t{V4} {MARK}
\t\t{V6} {MARK}
\t}}
}}
"""


def test_full_ruleset() -> None:
    # The reference 3.2 example peer plus an IPv6 network; its ULA is never marked.
    allowed = nets("192.168.3.4/32", "10.244.3.0/25", f"{PEER_ULA}/128", "2001:db8::/64")
    assert render_ruleset(allowed, mtu=1420, mesh_prefix=MESH) == EXPECTED_FULL


def test_empty_sets_leave_only_the_pass_through_rules() -> None:
    text = render_ruleset(nets(f"{PEER_ULA}/128"), mtu=1420, mesh_prefix=MESH)
    assert "daddr" not in text and "maxseg" not in text
    assert text.count("meta mark & 0x00000060 == 0x00000020 accept") == 2
    assert 'oifname "lo" accept' in text


def test_a_family_without_addresses_gets_no_rules() -> None:
    text = render_ruleset(nets("10.0.0.0/8"), mtu=1420, mesh_prefix=MESH)
    assert "ip6 daddr" not in text
    assert text.count("ip daddr { 10.0.0.0/8 }") == 3


def test_sets_are_minimal_disjoint_covers_without_the_mesh_prefix() -> None:
    other_ula = ip_network("fd00:1234::/64")  # not ours: routed like any peer network
    v4, v6 = routed_sets(
        nets("10.0.0.0/25", "10.0.0.128/25", "10.0.0.7/32", str(MESH), str(other_ula)),
        MESH,
    )
    assert v4 == (ip_network("10.0.0.0/24"),)
    assert v6 == (other_ula,)


def test_a_network_containing_the_mesh_prefix_is_split_around_it() -> None:
    _, v6 = routed_sets(nets("fd00::/8"), MESH)
    covered = {int(n.network_address) for n in v6}
    assert int(MESH.network_address) not in covered
    assert sum(n.num_addresses for n in v6) == 2**120 - 2**64


@pytest.mark.parametrize(("mtu", "mss4", "mss6"), [(1420, 1368, 1348), (1280, 1228, 1208)])
def test_mss_clamp_follows_mtu(mtu: int, mss4: int, mss6: int) -> None:
    text = render_ruleset(nets("10.0.0.0/8", "fd01::/64"), mtu=mtu, mesh_prefix=MESH)
    assert f"maxseg size > {mss4} tcp option maxseg size set {mss4}" in text
    assert f"maxseg size > {mss6} tcp option maxseg size set {mss6}" in text


def test_table_name_and_delete() -> None:
    text = render_ruleset([], mtu=1420, mesh_prefix=MESH, table="ks_test")
    assert text.splitlines()[1:4] == [
        "add table inet ks_test",
        "delete table inet ks_test",
        "table inet ks_test {",
    ]
    assert delete_ruleset() == "add table inet kubespan\ndelete table inet kubespan\n"


def test_rules_and_routes() -> None:
    assert ip_rule_argvs() == [
        ["ip", "-4", "rule", "add", "fwmark", "0x40/0x60", "table", "180", "priority", "32500"],
        ["ip", "-6", "rule", "add", "fwmark", "0x40/0x60", "table", "180", "priority", "32500"],
    ]
    assert ip_rule_argvs("del", ip="/sbin/ip")[1][:4] == ["/sbin/ip", "-6", "rule", "del"]
    with pytest.raises(ValueError, match="add or del"):
        ip_rule_argvs("flush")
    assert ip_route_argvs("kubespan", 1380) == [
        ["ip", "-4", "route", "replace", "default", "dev", "kubespan", "table", "180",
         "metric", "1", "mtu", "1380", "proto", "static"],
        ["ip", "-6", "route", "replace", "default", "dev", "kubespan", "table", "180",
         "metric", "1", "mtu", "1380", "proto", "static"],
    ]  # fmt: skip
