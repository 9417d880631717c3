"""One reconcile pass over all peers, pure: tracks advanced, desired device, routed set.

The agent reads the device, calls peer_pass() and hands the result to plan() and the
device; nothing here does I/O, so a pass is tested with plain values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from ipaddress import IPv6Address

from kubespan.config import Config
from kubespan.config_defaults import OBSERVE_FAST, OBSERVE_SLOW, PROBE_AFTER_KEEPALIVE
from kubespan.identity import Identity
from kubespan.nft import FWMARK_WG
from kubespan.peer_state import ConnectionState, Durations, PeerTrack, advance, observe
from kubespan.peers import PeerSpec
from kubespan.plan import MeshSpec, Op, RemovePeer, WgPeer, plan
from kubespan.wgdump import DeviceState
from membership.record import IPNetwork
from membership.sealing import ClusterKey


@dataclass(frozen=True, slots=True, kw_only=True)
class PassSettings:
    """What every pass takes from the config and the identity."""

    device: MeshSpec
    """The desired device, without peers."""
    durations: Durations
    keepalive: int
    psk: str = field(repr=False)
    force_routing: bool
    observe: tuple[float, float] = (OBSERVE_FAST.total_seconds(), OBSERVE_SLOW.total_seconds())
    """Seconds between device reads: while any peer is not up, and otherwise."""


def pass_settings(config: Config, identity: Identity, interface: str) -> PassSettings:
    """Settings for `interface`, with `identity`'s key and the cluster's preshared key."""
    mesh, timing = config.mesh, config.timing
    device = MeshSpec(
        interface=interface,
        public_key=identity.public_key,
        private_key_file=str(identity.private_key_path),
        listen_port=mesh.port,
        fwmark=FWMARK_WG,
        mtu=mesh.mtu,
    )
    return PassSettings(
        device=device,
        durations=Durations(timing.endpoint_timeout, timing.peer_down),
        keepalive=mesh.keepalive_seconds,
        psk=ClusterKey(config.cluster.secret).wireguard_psk,
        force_routing=mesh.force_routing,
    )


def observe_interval(
    tracks: Mapping[str, PeerTrack], now: datetime, settings: PassSettings
) -> float:
    """Seconds until the next device read; pure.

    Fast (1 s) while any peer is not up (an endpoint on trial, a peer down that may come
    back), and while any up peer is due its next keepalive: reads then date the packet that
    keeps it up to the second, and notice its absence as soon as `peer_down` has passed, so
    a vanished peer is reported within peer_down + 2 s rather than + 6 s. Slow (3 s)
    otherwise. A trial is read again the moment its endpoint timeout runs out.
    """
    fast, slow = settings.observe
    timeout = settings.durations.endpoint_timeout
    wait = slow
    for track in tracks.values():
        status = track.status
        if track.shown is not ConnectionState.UP:
            wait = min(wait, fast)
            if status.last_endpoint_change is not None:
                left = (status.last_endpoint_change + timeout - now).total_seconds()
                if 0 < left < wait:
                    wait = left
        elif settings.keepalive and status.last_handshake is not None:
            quiet = (now - status.last_handshake).total_seconds()
            if quiet >= settings.keepalive - slow:
                wait = min(wait, fast)
    return wait


def to_poke(
    specs: Sequence[PeerSpec], tracks: Mapping[str, PeerTrack], now: datetime, keepalive: int
) -> list[IPv6Address]:
    """Mesh addresses to send a datagram to this pass (kubespan/poke.py); pure.

    Down peers, so that WireGuard retries at once when their path returns; and up peers
    quiet for longer than a keepalive (one lost, or keepalives racing each other), so that
    a live one answers well before `peer_down` and is not reported down by mistake.
    """
    out = []
    for spec in specs:
        track = tracks.get(spec.public_key)
        if spec.address is None or track is None:
            continue
        if track.shown is ConnectionState.DOWN:
            out.append(spec.address)
        elif track.shown is ConnectionState.UP and keepalive:
            last = track.status.last_handshake
            limit = timedelta(seconds=keepalive) + PROBE_AFTER_KEEPALIVE
            if last is not None and now - last >= limit:
                out.append(spec.address)
    return out


@dataclass(frozen=True, slots=True)
class PeerPass:
    """The outcome of one pass: the new tracks (desired peers only), what to configure."""

    tracks: dict[str, PeerTrack]
    desired: MeshSpec
    ops: tuple[Op, ...]
    """What plan() says turns the device into `desired`; empty when nothing differs."""
    routed: tuple[IPNetwork, ...]
    """Networks to send through the mesh (force routing)."""
    messages: tuple[str, ...]
    """What changed, for the log: endpoint rotations and shown-state changes."""

    @property
    def summary(self) -> str:
        removed = sum(isinstance(op, RemovePeer) for op in self.ops)
        return f"{len(self.ops)} ops ({removed} removed), {len(self.desired.peers)} peers"


def peer_pass(
    specs: Sequence[PeerSpec],
    tracks: Mapping[str, PeerTrack],
    device: DeviceState,
    now: datetime,
    settings: PassSettings,
) -> PeerPass:
    """Observe every desired peer on `device`, advance it, build the desired device, plan.

    Tracks of peers no longer desired are dropped: a peer that comes back starts afresh.
    """
    durations = settings.durations
    have = {p.public_key: p for p in device.peers}
    new_tracks: dict[str, PeerTrack] = {}
    peers: list[WgPeer] = []
    messages: list[str] = []
    rotated: list[str] = []
    for spec in specs:
        before = tracks.get(spec.public_key)
        track = before or PeerTrack()
        track = replace(track, status=replace(track.status, label=spec.label))
        track = observe(track, have.get(spec.public_key), now, durations)
        step = advance(track, spec.endpoints, now, durations)
        if step.endpoint_changed:
            messages.append(f"peer {spec.label}: trying endpoint {step.status.last_used_endpoint}")
            if spec.public_key in have and track.status.last_used_endpoint is not None:
                rotated.append(spec.public_key)
        if before is None or before.shown != step.track.shown:
            messages.append(f"peer {spec.label}: {step.track.shown}")
        new_tracks[spec.public_key] = step.track
        peers.append(
            WgPeer(
                public_key=spec.public_key,
                endpoint=step.wg_endpoint,
                allowed_ips=spec.allowed_ips,
                persistent_keepalive=settings.keepalive,
                preshared_key=settings.psk,
            )
        )
    # Force routing (Talos' default, !allowDownPeerBypass): every peer's addresses go into
    # the mesh whatever its state, so traffic for a down peer is dropped rather than sent
    # in clear. Without it, only up peers are routed through the mesh.
    routed = tuple(
        net
        for spec in specs
        if settings.force_routing or new_tracks[spec.public_key].shown is ConnectionState.UP
        for net in spec.allowed_ips
    )
    desired = replace(settings.device, peers=tuple(peers))
    # A rotated peer is removed and added again rather than given the new endpoint: a new
    # endpoint alone waits for WireGuard's next handshake retry (up to 5 s, on its own
    # clock), a new peer starts one at once (its persistent keepalive). It is down, so there
    # is no session to lose.
    fresh = replace(device, peers=tuple(p for p in device.peers if p.public_key not in rotated))
    interface = settings.device.interface
    ops = (*(RemovePeer(interface, key) for key in rotated), *plan(fresh, desired))
    return PeerPass(new_tracks, desired, ops, routed, tuple(messages))
