"""Peer health and endpoint rotation: Talos' KubeSpan (reference 3.4, 3.5), plus rx liveness.

One pure state machine per peer, a PeerTrack: observe() folds each read of the device
(handshake, rx growth) into it, advance() runs on the reconcile tick and rotates endpoints.

A timeline for one peer with candidates [A, B] and defaults (15 s / 275 s):

    t=0    no endpoint yet -> pick A (endpoint change at 0)         unknown
    t=10   no handshake, 10 s < 15 s since the change               unknown
    t=16   no handshake, 16 s since the change                      down -> pick B
    t=20   handshake at 18 > change at 16                           up
    ...    handshakes keep coming (keepalive 25 s, rekey 120 s)      up
    t=h+275 no handshake for 275 s                                  down -> pick A (wraps)

Rotation only happens when the caller runs a pass (Talos: 30 s ticker or any input
change), so each dead candidate costs roughly one reconcile interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from kubespan.config_defaults import DEFAULT_ENDPOINT_TIMEOUT, DEFAULT_PEER_DOWN
from kubespan.wgdump import PeerState
from membership.record import EndpointAddr


class ConnectionState(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Durations:
    """Talos' EndpointConnectionTimeout and PeerDownInterval (180 + 5 + 90 s)."""

    endpoint_timeout: timedelta = DEFAULT_ENDPOINT_TIMEOUT
    peer_down: timedelta = DEFAULT_PEER_DOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatus:
    """What we know about one peer (Talos KubeSpanPeerStatus); None is Go's zero value."""

    label: str = ""
    endpoint: EndpointAddr | None = None
    """The endpoint WireGuard currently uses (it may have roamed)."""
    last_used_endpoint: EndpointAddr | None = None
    """The endpoint we last told WireGuard to use."""
    last_endpoint_change: datetime | None = None
    last_handshake: datetime | None = None
    rx: int = 0
    tx: int = 0
    state: ConnectionState = ConnectionState.UNKNOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerTrack:
    """One peer between device reads: Talos' status, our rx liveness and the state shown."""

    status: PeerStatus = PeerStatus()
    shown: ConnectionState = ConnectionState.UNKNOWN
    """The state to report: status.state, except that `down` survives a rotation."""
    handshake: datetime | None = None
    """WireGuard's own latest handshake; status.last_handshake also counts rx growth."""
    rx_seen: int | None = None
    """The rx counter at the last read; None until the first read."""
    rx_grew_at: datetime | None = None
    """When the rx counter last grew."""


@dataclass(frozen=True, slots=True)
class PeerStep:
    """One reconcile pass for one peer: the new track and what to hand WireGuard."""

    track: PeerTrack
    wg_endpoint: EndpointAddr | None
    """Endpoint to configure; None means "leave WireGuard's endpoint as it is"."""
    endpoint_changed: bool

    @property
    def status(self) -> PeerStatus:
        return self.track.status


def _handshake_after_change(status: PeerStatus) -> bool:
    if status.last_handshake is None:
        return False
    return (
        status.last_endpoint_change is None or status.last_handshake > status.last_endpoint_change
    )


def calculate_state(
    status: PeerStatus, now: datetime, durations: Durations = Durations()
) -> ConnectionState:
    """Talos CalculateStateWithDurations; pure and idempotent."""
    # A zero time is "infinitely long ago", as Go's saturating time.Sub makes it.
    since_change = (
        None if status.last_endpoint_change is None else now - status.last_endpoint_change
    )
    since_handshake = None if status.last_handshake is None else now - status.last_handshake
    if since_change is None or since_change > durations.peer_down:
        # Long past the last endpoint change: only handshake freshness matters.
        up = since_handshake is not None and since_handshake < durations.peer_down
        state = ConnectionState.UP if up else ConnectionState.DOWN
    elif since_change < durations.endpoint_timeout:
        # Still giving the new endpoint its chance to handshake.
        up = _handshake_after_change(status)
        state = ConnectionState.UP if up else ConnectionState.UNKNOWN
    else:
        up = _handshake_after_change(status)
        state = ConnectionState.UP if up else ConnectionState.DOWN
    if state is ConnectionState.DOWN and status.last_used_endpoint is None:
        # We never configured an endpoint, so "down" would be a verdict on nothing.
        state = ConnectionState.UNKNOWN
    return state


def should_change_endpoint(status: PeerStatus) -> bool:
    """Rotate when down, or when we never set an endpoint."""
    return status.state is ConnectionState.DOWN or status.last_used_endpoint is None


def pick_new_endpoint(status: PeerStatus, endpoints: Sequence[EndpointAddr]) -> EndpointAddr | None:
    """Next candidate round-robin after the last used one; None means "no change"."""
    if not endpoints:
        return None
    if status.last_used_endpoint is None:
        return endpoints[0]
    if (
        len(endpoints) == 1
        and endpoints[0] == status.last_used_endpoint
        and status.endpoint == status.last_used_endpoint
    ):
        # The only candidate is already in use: re-picking it would just restart the
        # 15 s grace period forever and hide that the peer is down.
        return None
    try:
        index = list(endpoints).index(status.last_used_endpoint)
    except ValueError:
        index = -1  # the endpoint vanished from the list: start over at [0]
    return endpoints[(index + 1) % len(endpoints)]


def update_endpoint(status: PeerStatus, endpoint: EndpointAddr, now: datetime) -> PeerStatus:
    """Record that we hand `endpoint` to WireGuard now (Talos UpdateEndpoint)."""
    return replace(
        status,
        endpoint=endpoint,
        last_used_endpoint=endpoint,
        last_endpoint_change=now,
        state=ConnectionState.UNKNOWN,
    )


def wireguard_endpoint(status: PeerStatus) -> EndpointAddr | None:
    """The re-establish rule: what to send WireGuard this pass (None = keep its own).

    Re-send our endpoint when WireGuard has none or the same one (a failed or partial
    apply). When WireGuard reports a different one, the peer roamed: WireGuard learned it
    from an authenticated packet, so it is known to work and must be kept.
    """
    if status.last_used_endpoint is None:
        return None
    if status.endpoint is None or status.endpoint == status.last_used_endpoint:
        return status.last_used_endpoint
    return None


def _shown(
    previous: ConnectionState, state: ConnectionState, *, rotated_away: bool
) -> ConnectionState:
    # advance() marks a peer `unknown` the moment it rotates a down peer to its next
    # candidate (Talos UpdateEndpoint), so a dead peer with several candidates would cycle
    # unknown -> rotate -> unknown and never be reported down. Once judged down, a peer is
    # shown down until it comes up; `unknown` stays for peers never judged yet.
    if state is not ConnectionState.UNKNOWN:
        return state
    if rotated_away or previous is ConnectionState.DOWN:
        return ConnectionState.DOWN
    return ConnectionState.UNKNOWN


def observe(
    track: PeerTrack, sample: PeerState | None, now: datetime, durations: Durations = Durations()
) -> PeerTrack:
    """Fold one read of the device into the track (Talos UpdateFromWireguard, plus rx).

    `sample` is the peer as WireGuard reports it, None when it is not on the device. Pure
    and safe on every device read, however often: more reads only date rx growth more
    precisely. It never rotates endpoints: that is advance()'s job, on the reconcile tick.
    """
    status = track.status
    if track.rx_seen is None and sample is not None and sample.endpoint is not None:
        # A peer configured by an earlier run of the agent: adopt its endpoint rather than
        # restart the rotation at [0], which would break a working tunnel.
        status = replace(status, last_used_endpoint=sample.endpoint)
    if sample is None:
        # We are about to add it: whatever it receives from now on is news (wg's handshake
        # time has 1 s resolution and may not prove a handshake after our endpoint change;
        # rx growth does).
        status = replace(status, endpoint=None, last_handshake=None, rx=0, tx=0)
        rx_seen, grew_at = 0, None
    else:
        # WireGuard only counts authenticated packets, so rx growth proves the peer alive
        # as well as a handshake does. Handshakes alone come every 2 minutes at best, which
        # is why Talos needs 275 s to call a peer down; with rx, a persistent keepalive
        # shorter than `peer_down` is enough. The first read is only a baseline: a counter
        # from before we looked says nothing about now.
        grew_at = track.rx_grew_at
        if track.rx_seen is not None and sample.rx > track.rx_seen:
            grew_at = now
        rx_seen = sample.rx
        times = [t for t in (sample.latest_handshake, grew_at) if t is not None]
        status = replace(
            status,
            endpoint=sample.endpoint,
            last_handshake=max(times) if times else None,
            rx=sample.rx,
            tx=sample.tx,
        )
    status = replace(status, state=calculate_state(status, now, durations))
    return PeerTrack(
        status=status,
        shown=_shown(track.shown, status.state, rotated_away=False),
        handshake=sample.latest_handshake if sample is not None else None,
        rx_seen=rx_seen,
        rx_grew_at=grew_at,
    )


def advance(
    track: PeerTrack,
    endpoints: Sequence[EndpointAddr],
    now: datetime,
    durations: Durations = Durations(),
) -> PeerStep:
    """One manager pass for one peer: compute state, rotate if needed, re-establish.

    Call after observe(), on the reconcile tick. `endpoints` are the peer's candidates in
    published order.
    """
    before = track.status
    status = replace(before, state=calculate_state(before, now, durations))
    changed = False
    if should_change_endpoint(status):
        new = pick_new_endpoint(status, endpoints)
        if new is not None:
            status = update_endpoint(status, new, now)
            changed = True
    # Rotating away from an endpoint we had configured means it was judged down.
    rotated_away = changed and before.last_used_endpoint is not None
    shown = _shown(track.shown, status.state, rotated_away=rotated_away)
    return PeerStep(replace(track, status=status, shown=shown), wireguard_endpoint(status), changed)
