from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from membership.members import Member, members, merge_affiliates
from membership.record import (
    AffiliateRecord,
    DecodedAffiliate,
    EndpointAddr,
    KubeSpanInfo,
)

A1, A2, A3 = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), IPv6Address("2001:db8::3")
NET1, NET2, NET3 = (
    IPv4Network("10.244.1.0/24"),
    IPv4Network("10.244.2.0/24"),
    IPv6Network("fd00::/64"),
)
EP1 = EndpointAddr(A1, 51820)
EP2 = EndpointAddr(A2, 51820)
EP3 = EndpointAddr(A3, 51821)
ULA1 = IPv6Address("fd50::1")
ULA2 = IPv6Address("fd50::2")


def aff(endpoints: tuple[EndpointAddr, ...] = (), **fields: Any) -> DecodedAffiliate:
    record = replace(AffiliateRecord(node_id="node-a"), **fields)
    return DecodedAffiliate(record=record, endpoints=endpoints)


# --- merge ----------------------------------------------------------------------------------


def test_a_single_source_passes_through_unchanged() -> None:
    a = aff(addresses=(A1, A1), hostname="h")
    b = aff(node_id="node-b", nodename="b")
    assert merge_affiliates([[a, b]]) == {"node-a": a, "node-b": b}


def test_lists_are_unioned_in_first_seen_order() -> None:
    first = aff(
        (EP2, EP1),
        addresses=(A2, A1),
        kubespan=KubeSpanInfo(
            public_key="k",
            additional_addresses=(NET2,),
            exclude_advertised_addresses=(NET1,),
        ),
    )
    second = aff(
        (EP1, EP3),
        addresses=(A3, A2),
        kubespan=KubeSpanInfo(
            public_key="k",
            additional_addresses=(NET1, NET2),
            exclude_advertised_addresses=(NET3, NET1),
        ),
    )
    merged = merge_affiliates([[first], [second]])["node-a"]
    assert merged.endpoints == (EP2, EP1, EP3)
    assert merged.record.addresses == (A2, A1, A3)
    assert merged.record.kubespan == KubeSpanInfo(
        public_key="k",
        additional_addresses=(NET2, NET1),
        exclude_advertised_addresses=(NET1, NET3),
    )


def test_later_non_empty_scalars_overwrite() -> None:
    first = aff(
        hostname="old-host",
        nodename="old-node",
        machine_type="worker",
        api_server_port=6443,
        kubespan=KubeSpanInfo(public_key="old-key", address=ULA1),
    )
    second = aff(
        hostname="new-host",
        nodename="new-node",
        machine_type="controlplane",
        api_server_port=7443,
        kubespan=KubeSpanInfo(public_key="new-key", address=ULA2),
    )
    record = merge_affiliates([[first], [second]])["node-a"].record
    assert record.hostname == "new-host"
    assert record.nodename == "new-node"
    assert record.machine_type == "controlplane"
    assert record.api_server_port == 7443
    assert record.kubespan == KubeSpanInfo(public_key="new-key", address=ULA2)


def test_empty_or_unknown_values_do_not_overwrite() -> None:
    first = aff(
        hostname="host",
        nodename="node",
        machine_type="worker",
        api_server_port=6443,
        kubespan=KubeSpanInfo(public_key="key", address=ULA1),
    )
    for machine_type in ("", "unknown"):
        second = aff(machine_type=machine_type, kubespan=KubeSpanInfo(public_key=""))
        assert merge_affiliates([[first], [second]])["node-a"] == first
    assert merge_affiliates([[first], [aff()]])["node-a"] == first


def test_unknown_machine_type_is_replaced_by_a_known_one() -> None:
    merged = merge_affiliates([[aff(machine_type="unknown")], [aff(machine_type="init")]])
    assert merged["node-a"].record.machine_type == "init"


def test_a_control_plane_port_of_zero_still_overwrites() -> None:
    merged = merge_affiliates([[aff(api_server_port=6443)], [aff(api_server_port=0)]])
    assert merged["node-a"].record.api_server_port == 0


def test_operating_system_keeps_the_first_non_empty_value() -> None:
    merged = merge_affiliates(
        [[aff()], [aff(operating_system="Talos (v1.9.0)")], [aff(operating_system="Talos (v1.10)")]]
    )
    assert merged["node-a"].record.operating_system == "Talos (v1.9.0)"


def test_kubespan_is_taken_from_whichever_source_has_it() -> None:
    ks = KubeSpanInfo(public_key="key", address=ULA1, additional_addresses=(NET1,))
    assert merge_affiliates([[aff()], [aff(kubespan=ks)]])["node-a"].record.kubespan == ks
    assert merge_affiliates([[aff(kubespan=ks)], [aff()]])["node-a"].record.kubespan == ks
    assert merge_affiliates([[aff()], [aff()]])["node-a"].record.kubespan is None


def test_records_are_grouped_by_node_id_within_and_across_sources() -> None:
    merged = merge_affiliates(
        [
            [aff(addresses=(A1,)), aff(node_id="node-b", hostname="b"), aff(addresses=(A2,))],
            [aff(node_id="node-c"), aff(addresses=(A3,))],
        ]
    )
    assert list(merged) == ["node-a", "node-b", "node-c"]
    assert merged["node-a"].record.addresses == (A1, A2, A3)


def test_records_without_a_node_id_are_ignored() -> None:
    assert merge_affiliates([[aff(node_id="", nodename="ghost")]]) == {}


def test_sources_may_be_any_iterables() -> None:
    merged = merge_affiliates([iter([aff(addresses=(A1,))]), (aff(addresses=(A2,)),)])
    assert merged["node-a"].record.addresses == (A1, A2)


ips = st.sampled_from([A1, A2, A3])
affiliates = st.builds(
    aff,
    st.lists(st.sampled_from([EP1, EP2, EP3]), max_size=3).map(tuple),
    node_id=st.sampled_from(["node-a", "node-b", "node-c"]),
    addresses=st.lists(ips, max_size=3).map(tuple),
    hostname=st.sampled_from(["", "h1", "h2"]),
    nodename=st.sampled_from(["", "n1", "n2"]),
    operating_system=st.sampled_from(["", "os1", "os2"]),
    api_server_port=st.none() | st.sampled_from([0, 6443]),
)


@given(st.lists(st.lists(affiliates, max_size=4), max_size=4))
def test_merge_unions_every_address_and_endpoint(sources: list[list[DecodedAffiliate]]) -> None:
    merged = merge_affiliates(sources)
    everything = [a for source in sources for a in source]
    assert set(merged) == {a.record.node_id for a in everything}
    for node_id, result in merged.items():
        mine = [a for a in everything if a.record.node_id == node_id]
        assert set(result.record.addresses) == {ip for a in mine for ip in a.record.addresses}
        assert set(result.endpoints) == {ep for a in mine for ep in a.endpoints}


@given(st.lists(affiliates, max_size=6))
def test_merging_a_source_with_itself_changes_nothing(source: list[DecodedAffiliate]) -> None:
    once = merge_affiliates([source])
    assert merge_affiliates([source, source]) == once
    assert merge_affiliates([list(once.values())] * 3) == once


# --- members --------------------------------------------------------------------------------


def test_members_are_affiliates_with_a_nodename_sorted_by_nodename() -> None:
    merged = merge_affiliates(
        [
            [
                aff(
                    node_id="id-z",
                    nodename="worker-2",
                    addresses=(A2,),
                    hostname="w2.example.org",
                    machine_type="worker",
                    operating_system="Talos (v1.9.0)",
                ),
                aff(node_id="id-x", nodename=""),
                aff(
                    node_id="id-y",
                    nodename="cp-1",
                    machine_type="controlplane",
                    api_server_port=6443,
                ),
            ]
        ]
    )
    assert members(merged.values()) == [
        Member(nodename="cp-1", node_id="id-y", machine_type="controlplane", api_server_port=6443),
        Member(
            nodename="worker-2",
            node_id="id-z",
            addresses=(A2,),
            hostname="w2.example.org",
            machine_type="worker",
            operating_system="Talos (v1.9.0)",
        ),
    ]


def test_a_nodename_collision_keeps_the_greatest_node_id() -> None:
    # A reinstalled node (new node ID) next to its stale affiliate: Talos iterates by ID.
    stale = aff(node_id="b-old", nodename="worker-1", hostname="stale")
    fresh = aff(node_id="a-new", nodename="worker-1", hostname="fresh")
    for order in ([stale, fresh], [fresh, stale]):
        (member,) = members(order)
        assert member.node_id == "b-old"
        assert member.hostname == "stale"


def test_no_affiliates_no_members() -> None:
    assert members([]) == []
