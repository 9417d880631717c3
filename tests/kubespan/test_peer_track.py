"""The peer state machine as the agent drives it: observe() every read, advance() every pass."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

from kubespan.peer_state import ConnectionState, Durations, PeerTrack, advance, observe
from kubespan.wgdump import PeerState
from membership.record import EndpointAddr

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UNKNOWN, UP, DOWN = ConnectionState.UNKNOWN, ConnectionState.UP, ConnectionState.DOWN
A = EndpointAddr(ip_address("10.98.0.22"), 51820)
B = EndpointAddr(ip_address("10.99.0.22"), 51820)
FAST = Durations(endpoint_timeout=timedelta(seconds=1), peer_down=timedelta(seconds=5))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Read:
    """One pass: what the device reports (`present=False`: not on it), then what we expect."""

    t: float
    rx: int = 0
    handshake: float | None = None
    present: bool = True
    live: float | None = None
    """Expected liveness: the later of the handshake and the last rx growth."""
    shown: ConnectionState = UNKNOWN
    sends: EndpointAddr | None = None
    changed: bool = False
    endpoint: EndpointAddr | None = None
    """What the device says its endpoint is; default: the last one we sent."""


def drive(reads: list[Read], candidates: tuple[EndpointAddr, ...] = (A, B)) -> PeerTrack:
    track = PeerTrack()
    configured: EndpointAddr | None = None
    for r in reads:
        sample = None
        if r.present:
            sample = PeerState(
                public_key="k",
                endpoint=r.endpoint or configured,
                latest_handshake=None if r.handshake is None else at(r.handshake),
                rx=r.rx,
            )
        track = observe(track, sample, at(r.t), FAST)
        live = None if r.live is None else at(r.live)
        assert (r.t, track.status.last_handshake) == (r.t, live)
        step = advance(track, candidates, at(r.t), FAST)
        got = (r.t, step.track.shown, step.wg_endpoint, step.endpoint_changed)
        assert got == (r.t, r.shown, r.sends, r.changed)
        track = step.track
        configured = step.wg_endpoint or configured
    return track


def test_rotation_rx_liveness_and_down_survives_rotation() -> None:
    final = drive(
        [
            Read(0, present=False, sends=A, changed=True),  # new peer: first candidate
            Read(1.5, shown=DOWN, sends=B, changed=True),  # silent past 1 s: down, rotate
            Read(2, rx=148, live=2, shown=UP, sends=B),  # packets arrive: up
            Read(5, rx=300, live=5, shown=UP, sends=B),
            Read(11, rx=300, live=5, shown=DOWN, sends=A, changed=True),  # silent > 5 s
            Read(11.5, rx=300, live=5, shown=DOWN, sends=A),  # shown down in the grace period
            Read(12, rx=340, live=12, shown=UP, sends=A),
        ]
    )
    assert final.status.last_used_endpoint == A and final.rx_grew_at == at(12)


def test_first_read_adopts_the_configured_endpoint() -> None:
    # A peer an earlier run configured on B, with a fresh handshake: no restart at A.
    final = drive([Read(0, handshake=-2, live=-2, shown=UP, sends=B, endpoint=B)])
    assert final.status.last_used_endpoint == B
    assert final.handshake == at(-2)


def test_first_counter_is_a_baseline_and_decreases_are_not_growth() -> None:
    drive(
        [
            Read(0, rx=1000, handshake=-1, live=-1, shown=UP, sends=B, endpoint=B),
            Read(1, rx=1000, handshake=-1, live=-1, shown=UP, sends=B),
            Read(2, rx=10, handshake=-1, live=-1, shown=UP, sends=B),  # counter reset
            Read(3, rx=20, handshake=-1, live=3, shown=UP, sends=B),
        ]
    )


def test_a_peer_missing_from_the_device_starts_from_zero() -> None:
    drive(
        [
            Read(0, rx=500, handshake=-1, live=-1, shown=UP, sends=B, endpoint=B),
            # Removed by hand: nothing proves it alive any more, so it is down and rotated.
            Read(1, present=False, shown=DOWN, sends=A, changed=True),
            Read(2, rx=60, live=2, shown=UP, sends=A),  # everything it got since is news
        ]
    )


def test_handshake_later_than_rx_growth_wins() -> None:
    drive(
        [
            Read(0, present=False, sends=A, changed=True),
            Read(0.5, rx=10, live=0.5, shown=UP, sends=A),
            Read(3, rx=10, handshake=2.5, live=2.5, shown=UP, sends=A),
        ]
    )


def test_more_reads_between_passes_only_date_growth_earlier() -> None:
    track = observe(PeerTrack(), PeerState(public_key="k", endpoint=A, rx=5), at(0), FAST)
    once = observe(track, PeerState(public_key="k", endpoint=A, rx=9), at(4), FAST)
    often = observe(track, PeerState(public_key="k", endpoint=A, rx=9), at(1), FAST)
    often = observe(often, PeerState(public_key="k", endpoint=A, rx=9), at(2), FAST)
    often = observe(often, PeerState(public_key="k", endpoint=A, rx=9), at(4), FAST)
    assert once.status.last_handshake == at(4)
    assert often.status.last_handshake == at(1)
    assert (once.shown, often.shown, once.status.rx, often.status.rx) == (UP, UP, 9, 9)
