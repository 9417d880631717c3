from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address, ip_network
from pathlib import Path

from kubespan.config import Config, load_config
from kubespan.identity import Identity, generate_private_key, public_key_of
from kubespan.peer_state import ConnectionState, PeerTrack
from kubespan.peers import PeerSpec
from kubespan.plan import AddPeer, RemovePeer, SetDevice
from kubespan.reconcile import pass_settings, peer_pass
from kubespan.wgdump import DeviceState, PeerState
from membership.record import EndpointAddr
from membership.sealing import ClusterKey

CLUSTER_ID = "8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo="
SECRET = base64.b64encode(bytes(range(32))).decode()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def config(extra: str = "") -> Config:
    return load_config(
        f"cluster: {{id: '{CLUSTER_ID}', secret: '{SECRET}'}}\n"
        "discovery: {endpoints: ['http://d:1']}\n"
        "timing: {endpoint_timeout: 1s, peer_down: 5s}\n" + extra
    )


def identity() -> Identity:
    key = generate_private_key()
    return Identity("me", public_key_of(key), key, Path("/state/wireguard.key"))


def spec(n: int) -> PeerSpec:
    return PeerSpec(
        public_key=public_key_of(generate_private_key()),
        node_id=f"node{n}",
        label=f"peer{n}",
        address=None,
        allowed_ips=(ip_network(f"10.99.0.{20 + n}/32"),),
        endpoints=(EndpointAddr(ip_address(f"10.99.0.{20 + n}"), 51820),),
    )


def test_first_pass_configures_the_device_and_every_peer() -> None:
    me, peers = identity(), [spec(2), spec(3)]
    settings = pass_settings(config(), me, "kubespan")
    step = peer_pass(peers, {}, DeviceState(), T0, settings)
    assert step.desired.public_key == me.public_key
    assert step.desired.private_key_file == "/state/wireguard.key"
    assert isinstance(step.ops[0], SetDevice)
    added = [op for op in step.ops if isinstance(op, AddPeer)]
    assert {op.public_key for op in added} == {p.public_key for p in peers}
    assert all(op.preshared_key == ClusterKey(SECRET).wireguard_psk for op in added)
    first_candidate = {p.public_key: p.endpoints[0] for p in peers}
    assert all(op.endpoint == first_candidate[op.public_key] for op in added)
    assert step.summary == f"{len(step.ops)} ops (0 removed), 2 peers"
    assert sorted(step.messages) == sorted(
        [f"peer {p.label}: trying endpoint {p.endpoints[0]}" for p in peers]
        + [f"peer {p.label}: unknown" for p in peers]
    )
    # Force routing (the default): every peer is routed whatever its state.
    assert set(step.routed) == {n for p in peers for n in p.allowed_ips}


def test_without_force_routing_only_up_peers_are_routed() -> None:
    peers = [spec(2), spec(3)]
    settings = pass_settings(config("mesh: {force_routing: false}\n"), identity(), "ks0")
    first = peer_pass(peers, {}, DeviceState(), T0, settings)
    assert first.routed == ()
    now = T0 + timedelta(seconds=0.5)
    device = DeviceState(
        peers=(
            PeerState(public_key=peers[0].public_key, endpoint=peers[0].endpoints[0]),
            PeerState(public_key=peers[1].public_key, endpoint=peers[1].endpoints[0]),
        )
    )
    second = peer_pass(peers, first.tracks, device, now, settings)
    device = DeviceState(
        peers=(
            PeerState(public_key=peers[0].public_key, endpoint=peers[0].endpoints[0], rx=92),
            PeerState(public_key=peers[1].public_key, endpoint=peers[1].endpoints[0]),
        )
    )
    third = peer_pass(peers, second.tracks, device, now + timedelta(seconds=0.2), settings)
    assert third.tracks[peers[0].public_key].shown is ConnectionState.UP
    assert third.routed == peers[0].allowed_ips
    assert f"peer {peers[0].label}: up" in third.messages


def test_peers_no_longer_desired_are_removed_and_forgotten() -> None:
    gone, kept = spec(2), spec(3)
    settings = pass_settings(config(), identity(), "ks0")
    device = DeviceState(
        public_key=settings.device.public_key,
        listen_port=51820,
        fwmark=settings.device.fwmark,
        peers=(PeerState(public_key=gone.public_key), PeerState(public_key=kept.public_key)),
    )
    tracks = {gone.public_key: PeerTrack(), kept.public_key: PeerTrack()}
    step = peer_pass([kept], tracks, device, T0, settings)
    assert RemovePeer("ks0", gone.public_key) in step.ops
    assert set(step.tracks) == {kept.public_key}


def test_a_rotation_re_adds_the_peer_so_wireguard_initiates_at_once() -> None:
    dead = EndpointAddr(ip_address("10.98.0.22"), 51820)
    peer = spec(2)
    peer = replace(peer, endpoints=(dead, *peer.endpoints))
    settings = pass_settings(config(), identity(), "ks0")
    first = peer_pass([peer], {}, DeviceState(), T0, settings)
    on_device = DeviceState(peers=(PeerState(public_key=peer.public_key, endpoint=dead),))
    later = peer_pass([peer], first.tracks, on_device, T0 + timedelta(seconds=1.5), settings)
    assert later.ops[0] == RemovePeer("ks0", peer.public_key)
    (added,) = [op for op in later.ops if isinstance(op, AddPeer)]
    assert (added.public_key, added.endpoint) == (peer.public_key, peer.endpoints[1])
    # The first configuration of a peer is a plain add.
    assert not any(isinstance(op, RemovePeer) for op in first.ops)
