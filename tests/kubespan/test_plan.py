from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubespan.plan import (
    AddPeer,
    CreateLink,
    MeshSpec,
    Op,
    RemovePeer,
    SetDevice,
    UpdatePeer,
    WgPeer,
    plan,
    wg_set_argv,
)
from kubespan.wgdump import DeviceState, PeerState, parse_wg_dump
from membership.record import EndpointAddr, IPNetwork

FIXTURES = Path(__file__).parent / "fixtures"
PSK = "uCRP6fSpZGTRcJVO3ZJGVLfooInxIviXvW9sjdnH0BA="
OUR_PUBLIC = "c8/LgGrhPQbEl8EdfMHqppaNEtyBIdrMgu5BPRVCDQU="
K1 = "UOIiJGUQAzBGUBZzsk4ZUe9QE2rS8b4+fsRIWvciBxs="
K2 = "vELr1l2BvnPx7CiMi4g4Wp6rWlEhvR2vZF9Pe3W7CRE="
K3 = "SqLMLtXJ78wcujBWP/a2WRo1YYHAEfDfu0nl3kDLLjg="
K4 = "4Vt53rTx4vR/Ctfmhl+ExDu7cCcGvxP0zqTT/oQQ9Bc="


def ep(text: str) -> EndpointAddr:
    host, _, port = text.rpartition(":")
    return EndpointAddr(ip_address(host.strip("[]")), int(port))


def nets(*texts: str) -> tuple[IPNetwork, ...]:
    return tuple(ip_network(t) for t in texts)


def spec(*peers: WgPeer, **overrides: object) -> MeshSpec:
    base = MeshSpec(
        interface="kubespan",
        public_key=OUR_PUBLIC,
        private_key_file="/var/lib/kubespan/wireguard.key",
        listen_port=51820,
        fwmark=0x20,
        mtu=1420,
        peers=peers,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


# What three-peers.dump shows, as desired state (in a different order, on purpose).
ULA1 = "fd7f:175a:b97c:5602:2c1a:b6ff:fe53:8169/128"
FIXTURE_PEERS = (
    WgPeer(
        public_key=K3, endpoint=None, allowed_ips=nets("192.168.1.12/32"), persistent_keepalive=0
    ),
    WgPeer(
        public_key=K1,
        endpoint=ep("192.0.2.10:51820"),
        allowed_ips=nets(ULA1, "10.244.1.0/24", "192.168.1.10/32"),
        preshared_key=PSK,
    ),
    WgPeer(
        public_key=K2,
        endpoint=ep("[fd00::1]:51820"),
        allowed_ips=nets("fd7f:175a:b97c:5602:e871:1bff:feb2:ccee/128"),
        preshared_key=PSK,
    ),
)


def three_peers() -> DeviceState:
    return parse_wg_dump((FIXTURES / "three-peers.dump").read_text())


def test_converged_device_needs_nothing() -> None:
    assert plan(three_peers(), spec(*FIXTURE_PEERS)) == []


def test_missing_device_is_created_and_filled() -> None:
    ops = plan(None, spec(*FIXTURE_PEERS))
    assert ops[:2] == [
        CreateLink("kubespan", 1420),
        SetDevice("kubespan", "/var/lib/kubespan/wireguard.key", 51820, 0x20),
    ]
    assert [type(op) for op in ops[2:]] == [AddPeer] * 3
    assert [op.public_key for op in ops[2:] if isinstance(op, AddPeer)] == sorted([K1, K2, K3])


def test_empty_device_gets_settings_and_peers() -> None:
    empty = parse_wg_dump((FIXTURES / "empty.dump").read_text())
    ops = plan(empty, spec(FIXTURE_PEERS[0]))
    assert ops == [
        SetDevice("kubespan", "/var/lib/kubespan/wireguard.key", 51820, 0x20),
        AddPeer(
            interface="kubespan",
            public_key=K3,
            endpoint=None,
            allowed_ips=nets("192.168.1.12/32"),
            persistent_keepalive=0,
        ),
    ]


def test_merge_walk_adds_updates_and_removes_without_touching_the_rest() -> None:
    k1, k2, _k3 = FIXTURE_PEERS[1], FIXTURE_PEERS[2], FIXTURE_PEERS[0]
    new = WgPeer(public_key=K4, endpoint=ep("192.0.2.44:51820"), allowed_ips=nets("10.0.4.0/24"))
    changed = replace(k2, allowed_ips=(*k2.allowed_ips, ip_network("10.0.2.0/24")))
    ops = plan(three_peers(), spec(new, k1, changed))
    # Sorted by public key: 4Vt... < SqL... < UOI... < vEL...
    assert ops == [
        AddPeer(
            interface="kubespan",
            public_key=K4,
            endpoint=new.endpoint,
            allowed_ips=new.allowed_ips,
            persistent_keepalive=25,
        ),
        RemovePeer("kubespan", K3),
        UpdatePeer(
            interface="kubespan",
            public_key=K2,
            endpoint=changed.endpoint,
            allowed_ips=changed.allowed_ips,
            persistent_keepalive=25,
            preshared_key=PSK,
        ),
    ]


@pytest.mark.parametrize(
    ("change", "is_change"),
    [
        ({"endpoint": None}, False),  # empty desired endpoint = keep the (roamed) one
        ({"endpoint": ep("192.0.2.11:51820")}, True),
        ({"allowed_ips": nets("192.168.1.10/32", ULA1, "10.244.1.0/24")}, False),
        ({"allowed_ips": nets("10.244.1.0/24")}, True),
        ({"persistent_keepalive": 0}, True),
        ({"preshared_key": None}, True),
        ({"preshared_key": "A" * 43 + "="}, True),
    ],
)
def test_peer_change_detection(change: dict[str, object], is_change: bool) -> None:
    k1 = replace(FIXTURE_PEERS[1], **change)  # type: ignore[arg-type]
    ops = plan(three_peers(), spec(FIXTURE_PEERS[0], k1, FIXTURE_PEERS[2]))
    assert [type(op) for op in ops] == ([UpdatePeer] if is_change else [])


def test_device_settings() -> None:
    device = three_peers()
    assert plan(device, spec(*FIXTURE_PEERS, listen_port=0)) == []  # 0 is "any"
    assert plan(device, spec(*FIXTURE_PEERS, listen_port=51821)) == [
        SetDevice("kubespan", listen_port=51821)
    ]
    assert plan(device, spec(*FIXTURE_PEERS, fwmark=0)) == [SetDevice("kubespan", fwmark=0)]
    assert plan(device, spec(*FIXTURE_PEERS, public_key=K4, private_key_file="/k")) == [
        SetDevice("kubespan", private_key_file="/k")
    ]


def test_duplicate_desired_keys_are_a_bug() -> None:
    with pytest.raises(ValueError, match="twice"):
        plan(None, spec(FIXTURE_PEERS[0], FIXTURE_PEERS[0]))


# --- wg set argv -----------------------------------------------------------------------------


def test_argv_for_peers() -> None:
    add = AddPeer(
        interface="kubespan",
        public_key=K2,
        endpoint=ep("[fd00::1]:51820"),
        allowed_ips=nets("10.0.0.0/24", "fd00::1/128"),
        persistent_keepalive=25,
        preshared_key=PSK,
    )
    argv = wg_set_argv(add, psk_path="/run/kubespan/psk")
    assert argv == [
        "wg", "set", "kubespan", "peer", K2,
        "preshared-key", "/run/kubespan/psk",
        "endpoint", "[fd00::1]:51820",
        "persistent-keepalive", "25",
        "allowed-ips", "10.0.0.0/24,fd00::1/128",
    ]  # fmt: skip
    assert PSK not in " ".join(argv)


def test_argv_update_without_endpoint_keeps_it() -> None:
    update = UpdatePeer(
        interface="ks0",
        public_key=K1,
        endpoint=None,
        allowed_ips=(),
        persistent_keepalive=0,
    )
    assert wg_set_argv(update, wg="/usr/bin/wg") == [
        "/usr/bin/wg", "set", "ks0", "peer", K1,
        "preshared-key", "/dev/null",
        "persistent-keepalive", "off",
        "allowed-ips", "",
    ]  # fmt: skip


def test_argv_psk_needs_a_file() -> None:
    add = AddPeer(
        interface="kubespan",
        public_key=K1,
        endpoint=None,
        allowed_ips=(),
        persistent_keepalive=25,
        preshared_key=PSK,
    )
    with pytest.raises(ValueError, match="psk_path"):
        wg_set_argv(add)


def test_argv_remove_and_device() -> None:
    assert wg_set_argv(RemovePeer("kubespan", K1))[3:] == ["peer", K1, "remove"]
    device = SetDevice("kubespan", "/state/wireguard.key", listen_port=51820, fwmark=0x20)
    assert wg_set_argv(device) == [
        "wg", "set", "kubespan",
        "private-key", "/state/wireguard.key",
        "listen-port", "51820",
        "fwmark", "0x20",
    ]  # fmt: skip
    assert wg_set_argv(device, key_path="/tmp/k")[4] == "/tmp/k"
    assert wg_set_argv(SetDevice("kubespan", fwmark=0))[3:] == ["fwmark", "off"]
    with pytest.raises(ValueError, match="CreateLink"):
        wg_set_argv(CreateLink("kubespan", 1420))


def test_secret_values_stay_out_of_op_repr() -> None:
    ops = plan(None, spec(*FIXTURE_PEERS))
    assert PSK not in repr(ops)


# --- property: applying the plan converges ---------------------------------------------------

KEYS = [K1, K2, K3, K4]
ENDPOINTS = [None, ep("192.0.2.1:51820"), ep("[2001:db8::1]:51820")]
ALLOWED = [nets(), nets("10.0.0.0/24"), nets("10.0.1.1/32", "fd00::1/128")]

peer_states = st.builds(
    PeerState,
    public_key=st.sampled_from(KEYS),
    preshared_key=st.sampled_from([None, PSK]),
    endpoint=st.sampled_from(ENDPOINTS),
    allowed_ips=st.sampled_from(ALLOWED),
    persistent_keepalive=st.sampled_from([0, 25]),
)
wg_peers = st.builds(
    WgPeer,
    public_key=st.sampled_from(KEYS),
    endpoint=st.sampled_from(ENDPOINTS),
    allowed_ips=st.sampled_from(ALLOWED),
    persistent_keepalive=st.sampled_from([0, 25]),
    preshared_key=st.sampled_from([None, PSK]),
)


def unique(items: list[PeerState]) -> tuple[PeerState, ...]:
    return tuple({p.public_key: p for p in items}.values())


def apply(device: DeviceState | None, ops: list[Op]) -> DeviceState:
    """A model of what `wg set` does, to check plans converge."""
    state = device or DeviceState()
    peers = {p.public_key: p for p in state.peers}
    for op in ops:
        if isinstance(op, SetDevice):
            state = replace(
                state,
                public_key=OUR_PUBLIC if op.private_key_file else state.public_key,
                listen_port=op.listen_port or state.listen_port,
                fwmark=state.fwmark if op.fwmark is None else op.fwmark,
            )
        elif isinstance(op, RemovePeer):
            del peers[op.public_key]
        elif isinstance(op, AddPeer | UpdatePeer):
            old = peers.get(op.public_key)
            peers[op.public_key] = PeerState(
                public_key=op.public_key,
                preshared_key=op.preshared_key,
                endpoint=op.endpoint or (old.endpoint if old else None),
                allowed_ips=op.allowed_ips,
                persistent_keepalive=op.persistent_keepalive,
            )
    return replace(state, peers=tuple(peers.values()))


# Brute-force oracles are slow-ish; a loaded CI box must not trip the deadline.
@settings(deadline=None)
@given(
    st.one_of(st.none(), st.lists(peer_states, max_size=4).map(unique)),
    st.lists(wg_peers, max_size=4).map(lambda ps: tuple({p.public_key: p for p in ps}.values())),
)
def test_applying_the_plan_converges(
    current_peers: tuple[PeerState, ...] | None, desired_peers: tuple[WgPeer, ...]
) -> None:
    current = None if current_peers is None else DeviceState(peers=current_peers)
    desired = spec(*desired_peers)
    ops = plan(current, desired)
    after = apply(current, ops)
    assert plan(after, desired) == []
    # Untouched peers get no op at all: no full replace.
    touched = {op.public_key for op in ops if isinstance(op, AddPeer | UpdatePeer | RemovePeer)}
    assert len(touched) == len([op for op in ops if not isinstance(op, CreateLink | SetDevice)])
