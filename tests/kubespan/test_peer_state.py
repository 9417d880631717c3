from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address

import pytest

from kubespan.peer_state import (
    ConnectionState,
    Durations,
    PeerStatus,
    PeerTrack,
    advance,
    calculate_state,
    observe,
    pick_new_endpoint,
    should_change_endpoint,
    update_endpoint,
    wireguard_endpoint,
)
from kubespan.wgdump import PeerState
from membership.record import EndpointAddr

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UNKNOWN, UP, DOWN = ConnectionState.UNKNOWN, ConnectionState.UP, ConnectionState.DOWN
# Talos' EndpointConnectionTimeout and PeerDownInterval: the tables of Talos' algorithm below
# use them; the agent's own defaults are shorter (test_production_defaults_read_every_second).
TALOS = Durations(endpoint_timeout=timedelta(seconds=15), peer_down=timedelta(seconds=275))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ep(text: str) -> EndpointAddr:
    host, _, port = text.rpartition(":")
    return EndpointAddr(ip_address(host.strip("[]")), int(port))


A, B, C = ep("192.0.2.1:51820"), ep("198.51.100.1:51820"), ep("[2001:db8::1]:51820")
ROAMED = ep("203.0.113.50:40000")


@dataclass(frozen=True)
class Pass:
    """One manager pass: what WireGuard reports, then what we expect to decide."""

    t: float
    handshake: float | None
    state: ConnectionState
    sends: EndpointAddr | None
    changed: bool = False
    candidates: tuple[EndpointAddr, ...] = (A, B, C)
    roamed_to: EndpointAddr | None = None


def run(passes: list[Pass], durations: Durations | None = None) -> PeerStatus:
    """Drive observe() and advance() like the agent would, with a fake device that applies
    what we send."""
    track = PeerTrack(status=PeerStatus(label="peer"))
    device_endpoint: EndpointAddr | None = None
    for p in passes:
        if p.roamed_to is not None:
            device_endpoint = p.roamed_to
        sample = PeerState(
            public_key="peer",
            endpoint=device_endpoint,
            latest_handshake=None if p.handshake is None else at(p.handshake),
        )
        track = observe(track, sample, at(p.t), durations or TALOS)
        step = advance(track, p.candidates, at(p.t), durations or TALOS)
        got = (p.t, step.status.state, step.wg_endpoint, step.endpoint_changed)
        assert got == (p.t, p.state, p.sends, p.changed)
        track = step.track
        if step.wg_endpoint is not None:
            device_endpoint = step.wg_endpoint
    return track.status


def test_timeline_rotation_up_down_and_wraparound() -> None:
    final = run(
        [
            Pass(0, None, UNKNOWN, A, changed=True),  # first endpoint: candidates[0]
            Pass(10, None, UNKNOWN, A),  # within 15 s of the change: give it a chance
            Pass(16, None, UNKNOWN, B, changed=True),  # down (no handshake) -> rotate
            Pass(20, 18, UP, B),  # handshake after the change
            Pass(300, 290, UP, B),  # long after the change: handshake freshness only
            Pass(564, 290, UP, B),  # 274 s since the last handshake
            Pass(566, 290, UNKNOWN, C, changed=True),  # 276 s: down -> next candidate
            Pass(576, 290, UNKNOWN, C),  # old handshake predates the change
            Pass(582, 290, UNKNOWN, A, changed=True),  # down again -> wraps to [0]
            Pass(590, 585, UP, A),
        ]
    )
    assert final.last_used_endpoint == A and final.last_endpoint_change == at(582)


def test_vanished_endpoint_restarts_at_first_candidate() -> None:
    run(
        [
            Pass(0, None, UNKNOWN, A, changed=True),
            Pass(5, 3, UP, A),
            # A is no longer published; the peer is still up, so nothing moves...
            Pass(200, 190, UP, A, candidates=(C, B)),
            # ...until it is down: A's index is -1, so (-1 + 1) % 2 picks [0].
            Pass(470, 190, UNKNOWN, C, changed=True, candidates=(C, B)),
        ]
    )


def test_roamed_endpoint_is_kept() -> None:
    final = run(
        [
            Pass(0, None, UNKNOWN, A, changed=True),
            # The peer reached us from behind a NAT: WireGuard learned ROAMED from an
            # authenticated packet. We send no endpoint, so the roamed one stays.
            Pass(8, 7, UP, None, roamed_to=ROAMED),
            Pass(400, 390, UP, None),
        ]
    )
    assert final.endpoint == ROAMED and final.last_used_endpoint == A


def test_roamed_peer_that_goes_down_is_rotated() -> None:
    run(
        [
            Pass(0, None, UNKNOWN, A, changed=True),
            Pass(8, 7, UP, None, roamed_to=ROAMED),
            Pass(300, 7, UNKNOWN, B, changed=True),
        ]
    )


def test_single_candidate_in_use_is_not_re_picked() -> None:
    final = run(
        [
            Pass(0, None, UNKNOWN, A, changed=True, candidates=(A,)),
            # Down, but the only candidate is already configured: no change, and the
            # endpoint change time is not bumped, so it stays down instead of flapping.
            Pass(20, None, DOWN, A, candidates=(A,)),
            Pass(50, None, DOWN, A, candidates=(A,)),
        ]
    )
    assert final.last_endpoint_change == at(0)


def test_no_candidates_leaves_the_peer_unconfigured() -> None:
    final = run(
        [
            Pass(0, None, UNKNOWN, None, candidates=()),
            Pass(400, None, UNKNOWN, None, candidates=()),
        ]
    )
    assert final.last_used_endpoint is None


def test_peer_that_connects_to_us_without_candidates() -> None:
    run(
        [
            Pass(0, None, UNKNOWN, None, candidates=()),
            Pass(30, 29, UP, None, candidates=(), roamed_to=ROAMED),
        ]
    )


def test_durations_are_configurable() -> None:
    fast = Durations(endpoint_timeout=timedelta(seconds=2), peer_down=timedelta(seconds=10))
    run(
        [
            Pass(0, None, UNKNOWN, A, changed=True),
            Pass(3, None, UNKNOWN, B, changed=True),
            Pass(4, 4, UP, B),
            Pass(15, 4, UNKNOWN, C, changed=True),
        ],
        fast,
    )


@pytest.mark.parametrize(
    ("since_change", "since_handshake", "used", "expected"),
    [
        # never configured: first branch, and "down" becomes unknown
        (None, None, False, UNKNOWN),
        (None, 10, False, UP),
        (None, 300, True, DOWN),
        # inside the 15 s grace period
        (0, None, True, UNKNOWN),
        (14.9, 20, True, UNKNOWN),  # handshake before the change
        (14.9, 14.9, True, UNKNOWN),  # at the change: not strictly after
        (14.9, 14, True, UP),
        # 15 s <= since change <= 275 s
        (15, None, True, DOWN),
        (15, None, False, UNKNOWN),
        (275, 274, True, UP),
        (275, 276, True, DOWN),
        # past 275 s: freshness of the last handshake only
        (275.1, 274, True, UP),
        (400, 274.9, True, UP),
        (400, 275, True, DOWN),
        (400, None, True, DOWN),
    ],
)
def test_calculate_state_branches(
    since_change: float | None, since_handshake: float | None, used: bool, expected: ConnectionState
) -> None:
    now = at(1000)

    def ago(seconds: float | None) -> datetime | None:
        return None if seconds is None else now - timedelta(seconds=seconds)

    status = PeerStatus(
        last_used_endpoint=A if used else None,
        last_endpoint_change=ago(since_change),
        last_handshake=ago(since_handshake),
    )
    assert calculate_state(status, now, TALOS) is expected


def test_should_change_endpoint() -> None:
    assert should_change_endpoint(PeerStatus())
    assert should_change_endpoint(PeerStatus(last_used_endpoint=A, state=DOWN))
    assert not should_change_endpoint(PeerStatus(last_used_endpoint=A, state=UP))
    assert not should_change_endpoint(PeerStatus(last_used_endpoint=A, state=UNKNOWN))


def test_pick_new_endpoint() -> None:
    used = PeerStatus(last_used_endpoint=B, endpoint=B)
    assert pick_new_endpoint(PeerStatus(), [A, B]) == A
    assert pick_new_endpoint(used, []) is None
    assert pick_new_endpoint(used, [A, B, C]) == C
    assert pick_new_endpoint(replace(used, last_used_endpoint=C), [A, B, C]) == A
    assert pick_new_endpoint(used, [A, C]) == A
    assert pick_new_endpoint(used, [B]) is None
    # the special case needs WireGuard to be on that endpoint too
    assert pick_new_endpoint(replace(used, endpoint=ROAMED), [B]) == B
    assert pick_new_endpoint(replace(used, endpoint=None), [B]) == B


def test_update_endpoint_resets_to_unknown() -> None:
    status = update_endpoint(PeerStatus(state=DOWN, endpoint=ROAMED), C, at(5))
    assert status == PeerStatus(
        state=UNKNOWN, endpoint=C, last_used_endpoint=C, last_endpoint_change=at(5)
    )


@pytest.mark.parametrize(
    ("last_used", "current", "sends"),
    [(None, None, None), (None, A, None), (A, None, A), (A, A, A), (A, ROAMED, None)],
)
def test_reestablish_rule(
    last_used: EndpointAddr | None, current: EndpointAddr | None, sends: EndpointAddr | None
) -> None:
    assert wireguard_endpoint(PeerStatus(last_used_endpoint=last_used, endpoint=current)) == sends


def test_observe_copies_what_the_device_reports() -> None:
    status = PeerStatus(label="x", last_used_endpoint=A, state=UP)
    sample = PeerState(public_key="x", endpoint=B, latest_handshake=at(1), rx=10, tx=20)
    updated = observe(PeerTrack(status=status, rx_seen=0), sample, at(1)).status
    assert updated == replace(status, endpoint=B, last_handshake=at(1), rx=10, tx=20)


def test_production_defaults_read_every_second() -> None:
    # The agent observes and advances on every device read (each second while a peer is not
    # up), so a dead candidate costs the 6 s endpoint timeout, not a 30 s reconcile tick.
    final = run(
        [
            Pass(0, None, UNKNOWN, A, changed=True),
            *(Pass(t, None, UNKNOWN, A) for t in range(1, 6)),
            Pass(6, None, UNKNOWN, B, changed=True),  # 6 s without a handshake: next one
            Pass(7, 7, UP, B),  # handshook: up on this very read
            Pass(51, 7, UP, B),  # 45 s since the change, handshake after it
            Pass(52, 7, UNKNOWN, C, changed=True),  # 45 s without a sign of life: down
        ],
        Durations(),
    )
    assert final.last_used_endpoint == C
